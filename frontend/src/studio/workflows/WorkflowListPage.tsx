import { useEffect, useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../../shared/api";
import type { StudioBoot } from "../boot";
import { linkHandler, navigate, STUDIO_ROOT } from "../router";
import "./locales";
import type { WorkflowInfo } from "./types";
import { workflowApi } from "./workflowApi";

export function WorkflowListPage({ boot }: { boot: StudioBoot }) {
  const { t, i18n } = useTranslation("editor");
  const [workflows, setWorkflows] = useState<WorkflowInfo[] | null>(null);
  const [error, setError] = useState("");
  const canCreate = boot.user.permissions.includes("workflows.add_workflow");
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});

  useEffect(() => {
    workflowApi
      .list()
      .then((page) => setWorkflows(page.results))
      .catch((exc: Error) => setError(exc.message));
  }, []);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setFieldErrors({});
    try {
      const workflow = await workflowApi.create(name.trim(), description);
      navigate(`${STUDIO_ROOT}workflows/${workflow.id}`);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 400) {
        const errors: Record<string, string> = {};
        for (const [field, value] of Object.entries(exc.body)) {
          errors[field] = Array.isArray(value) ? value.join(" ") : String(value);
        }
        setFieldErrors(errors);
      } else setError((exc as Error).message);
    }
  };

  return (
    <div className="page">
      <h1>{t("workflows")}</h1>
      {error && (
        <p className="notice error" role="alert">
          {t("load_failed", { message: error })}
        </p>
      )}
      {canCreate && (
        <form className="create-form" onSubmit={create} aria-label={t("new_workflow")} noValidate>
          <div className="field">
            <label htmlFor="new-workflow-name">{t("name")}</label>
            <input
              id="new-workflow-name"
              value={name}
              onChange={(e) => setName(e.target.value)}
              aria-invalid={Boolean(fieldErrors.name)}
              aria-describedby={fieldErrors.name ? "new-workflow-name-error" : undefined}
            />
            {fieldErrors.name && (
              <span id="new-workflow-name-error" className="error-text">
                {fieldErrors.name}
              </span>
            )}
          </div>
          <div className="field">
            <label htmlFor="new-workflow-description">{t("description")}</label>
            <input
              id="new-workflow-description"
              value={description}
              onChange={(e) => setDescription(e.target.value)}
            />
          </div>
          <button type="submit" className="primary">
            {t("new_workflow")}
          </button>
        </form>
      )}
      {workflows === null && !error && <p className="muted">{t("loading")}</p>}
      {workflows?.length === 0 && <p className="muted">{canCreate ? t("none_yet") : t("none_visible")}</p>}
      {workflows && workflows.length > 0 && (
        <table className="list">
          <thead>
            <tr>
              <th scope="col">{t("name")}</th>
              <th scope="col">{t("description")}</th>
              <th scope="col">{t("owner")}</th>
              <th scope="col">{t("updated")}</th>
            </tr>
          </thead>
          <tbody>
            {workflows.map((workflow) => (
              <tr key={workflow.id}>
                <td>
                  <a
                    href={`${STUDIO_ROOT}workflows/${workflow.id}`}
                    onClick={linkHandler(`${STUDIO_ROOT}workflows/${workflow.id}`)}
                  >
                    {workflow.name}
                  </a>
                </td>
                <td className="muted">{workflow.description}</td>
                <td>{workflow.created_by ?? ""}</td>
                <td>{new Date(workflow.updated_at).toLocaleString(i18n.language)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
