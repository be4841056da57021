import { useTranslation } from "react-i18next";
import { csrfToken } from "../shared/api";
import type { StudioBoot } from "./boot";
import { KnowledgeBasePage } from "./knowledge/KnowledgeBasePage";
import { KnowledgeListPage } from "./knowledge/KnowledgeListPage";
import { linkHandler, STUDIO_ROOT, useRoute } from "./router";
import { WorkflowEditorPage } from "./workflows/WorkflowEditorPage";
import { WorkflowListPage } from "./workflows/WorkflowListPage";

export function App({ boot }: { boot: StudioBoot }) {
  const route = useRoute();
  const { t, i18n } = useTranslation("studio");
  const section = route.page.startsWith("knowledge") ? "knowledge" : "workflows";
  return (
    <div className="studio">
      <a className="skip-link" href="#content">
        {t("skip_to_content")}
      </a>
      <header className="topbar">
        <span className="brand">{t("brand")}</span>
        <nav aria-label={t("brand")}>
          <a
            href={`${STUDIO_ROOT}workflows`}
            aria-current={section === "workflows" ? "page" : undefined}
            onClick={linkHandler(`${STUDIO_ROOT}workflows`)}
          >
            {t("nav_workflows")}
          </a>
          <a
            href={`${STUDIO_ROOT}knowledge`}
            aria-current={section === "knowledge" ? "page" : undefined}
            onClick={linkHandler(`${STUDIO_ROOT}knowledge`)}
          >
            {t("nav_knowledge")}
          </a>
          {boot.user.is_staff && <a href={boot.urls.admin}>{t("nav_admin")}</a>}
        </nav>
        <div className="topbar-end">
          <form method="post" action={boot.urls.setlang} className="language-form">
            <input type="hidden" name="csrfmiddlewaretoken" value={csrfToken()} />
            <input type="hidden" name="next" value={window.location.pathname} />
            <label>
              <span className="visually-hidden">{t("language")}</span>
              <select
                name="language"
                value={i18n.language === "zh-Hans" ? "zh-hans" : "en"}
                onChange={(event) => event.currentTarget.form?.submit()}
              >
                <option value="en">English</option>
                <option value="zh-hans">简体中文</option>
              </select>
            </label>
          </form>
          <span className="username">{boot.user.username}</span>
          <form method="post" action={boot.urls.logout}>
            <input type="hidden" name="csrfmiddlewaretoken" value={csrfToken()} />
            <button type="submit" className="link-button">
              {t("sign_out")}
            </button>
          </form>
        </div>
      </header>
      <main id="content" className="content" tabIndex={-1}>
        {route.page === "workflows" && <WorkflowListPage boot={boot} />}
        {route.page === "workflow" && (
          <WorkflowEditorPage key={route.id} workflowId={route.id} runId={route.runId} />
        )}
        {route.page === "knowledge" && <KnowledgeListPage boot={boot} />}
        {route.page === "knowledge-base" && <KnowledgeBasePage key={route.id} baseId={route.id} />}
        {route.page === "not-found" && (
          <div className="page">
            <p>{t("not_found")}</p>
            <a href={`${STUDIO_ROOT}workflows`} onClick={linkHandler(`${STUDIO_ROOT}workflows`)}>
              {t("back_to_workflows")}
            </a>
          </div>
        )}
      </main>
    </div>
  );
}
