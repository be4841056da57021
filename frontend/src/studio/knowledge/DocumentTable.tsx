import { useTranslation } from "react-i18next";
import { paths } from "./client";
import { formatBytes } from "./format";
import { isWorking, pipelineStep, statusLabelKey, statusTone } from "./status";
import type { KnowledgeDocument } from "./types";

interface Props {
  caption: string;
  documents: readonly KnowledgeDocument[];
  canManage: boolean;
  busy: ReadonlySet<string>;
  onToggle: (document: KnowledgeDocument, enabled: boolean) => void;
  onRetry: (document: KnowledgeDocument) => void;
  onDelete: (document: KnowledgeDocument) => void;
}

export function DocumentTable(props: Props) {
  const { t, i18n } = useTranslation("knowledge");
  const { documents, canManage, busy } = props;
  return (
    <div className="kb-table-wrap">
      <table className="list kb-documents">
        <caption className="visually-hidden">{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">{t("col_document")}</th>
            <th scope="col">{t("col_status")}</th>
            <th scope="col" className="kb-num">
              {t("col_chunks")}
            </th>
            <th scope="col" className="kb-num">
              {t("col_pages")}
            </th>
            <th scope="col">{t("col_enabled")}</th>
            <th scope="col">
              <span className="visually-hidden">{t("col_actions")}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {documents.map((document) => {
            const step = pipelineStep(document.status);
            const working = busy.has(document.id);
            const showTitle =
              document.title && !document.filename.startsWith(`${document.title}.`);
            return (
              <tr key={document.id} data-status={document.status}>
                <th scope="row" className="kb-doc-name">
                  <span>{document.filename}</span>
                  <span className="muted kb-doc-sub">
                    {showTitle ? `${document.title} · ` : ""}
                    {formatBytes(document.size, i18n.language)}
                  </span>
                </th>
                <td>
                  <span className={`kb-status kb-status-${statusTone(document.status)}`}>
                    {isWorking(document.status) && (
                      <span className="kb-spinner" aria-hidden="true" />
                    )}
                    {t(statusLabelKey(document.status))}
                  </span>
                  {step !== null && step > 0 && (
                    <span className="muted kb-step"> {t("step_of", { step, total: 3 })}</span>
                  )}
                  {document.status === "failed" && document.error && (
                    <p className="kb-doc-error">{document.error}</p>
                  )}
                </td>
                <td className="kb-num">
                  {document.status === "indexed" ? document.chunk_count : "—"}
                </td>
                <td className="kb-num">{document.pages ?? "—"}</td>
                <td>
                  {canManage ? (
                    <label className="kb-switch">
                      <input
                        type="checkbox"
                        role="switch"
                        checked={document.enabled}
                        disabled={working}
                        onChange={(event) => props.onToggle(document, event.currentTarget.checked)}
                        aria-label={t("enabled_for", { name: document.filename })}
                      />
                      <span aria-hidden="true">{document.enabled ? t("on") : t("off")}</span>
                    </label>
                  ) : (
                    <span>{document.enabled ? t("yes") : t("no")}</span>
                  )}
                </td>
                <td>
                  <div className="kb-actions">
                    <a
                      className="button"
                      href={paths.download(document.id)}
                      download={document.filename}
                      aria-label={t("download_for", { name: document.filename })}
                    >
                      {t("download")}
                    </a>
                    {canManage && document.status === "failed" && (
                      <button
                        type="button"
                        disabled={working}
                        onClick={() => props.onRetry(document)}
                        aria-label={t("retry_for", { name: document.filename })}
                      >
                        {t("retry")}
                      </button>
                    )}
                    {canManage && (
                      <button
                        type="button"
                        className="danger"
                        disabled={working}
                        onClick={() => props.onDelete(document)}
                        aria-label={t("delete_for", { name: document.filename })}
                      >
                        {t("delete")}
                      </button>
                    )}
                  </div>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
