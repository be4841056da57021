// Version history: list, diff any two (or a version and the draft), roll back.
import { useEffect, useState } from "react";
import { useTranslation } from "react-i18next";
import type { VersionInfo } from "./types";
import { workflowApi } from "./workflowApi";

type Side = number | "draft";

interface DiffPart {
  added: string[];
  removed: string[];
  changed: { id: string; fields: Record<string, [unknown, unknown]> }[];
}

function short(value: unknown): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? "—" : text.length > 140 ? `${text.slice(0, 139)}…` : text;
}

export function VersionsPanel(props: {
  workflowId: string;
  canPublish: boolean;
  refreshKey: number;
  onRolledBack: (version: VersionInfo, from: number) => void;
  onClose: () => void;
}) {
  const { t, i18n } = useTranslation("editor");
  const [versions, setVersions] = useState<VersionInfo[] | null>(null);
  const [from, setFrom] = useState<Side | null>(null);
  const [to, setTo] = useState<Side>("draft");
  const [diff, setDiff] = useState<Record<string, unknown> | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    workflowApi
      .versions(props.workflowId)
      .then((list) => {
        setVersions(list);
        if (list.length) setFrom(list[0].number);
      })
      .catch((exc: Error) => setError(exc.message));
  }, [props.workflowId, props.refreshKey]);

  const compare = async () => {
    if (from === null) return;
    setError("");
    try {
      setDiff(await workflowApi.diff(props.workflowId, from, to));
    } catch (exc) {
      setError((exc as Error).message);
    }
  };

  const rollback = async (number: number) => {
    if (!window.confirm(t("rollback_confirm", { number }))) return;
    try {
      props.onRolledBack(await workflowApi.rollback(props.workflowId, number), number);
    } catch (exc) {
      setError((exc as Error).message);
    }
  };

  const options = (
    <>
      <option value="draft">{t("draft")}</option>
      {versions?.map((v) => (
        <option key={v.number} value={v.number}>
          {t("version", { number: v.number })}
        </option>
      ))}
    </>
  );
  const parse = (value: string): Side => (value === "draft" ? "draft" : Number(value));
  const sections: [string, string][] = [
    ["nodes", t("diff_nodes")],
    ["edges", t("diff_edges")],
  ];
  const variables = (diff?.variables ?? {}) as Record<string, [unknown, unknown]>;
  const empty =
    diff &&
    sections.every(([key]) => {
      const part = diff[key] as DiffPart;
      return !part.added.length && !part.removed.length && !part.changed.length;
    }) &&
    !Object.keys(variables).length;

  return (
    <section className="side-panel versions-panel" aria-label={t("versions_title")}>
      <header className="side-panel-header">
        <h2>{t("versions_title")}</h2>
        <button type="button" onClick={props.onClose}>
          {t("close")}
        </button>
      </header>
      {error && (
        <p className="notice error" role="alert">
          {error}
        </p>
      )}
      {versions?.length === 0 && <p className="muted">{t("no_versions")}</p>}
      <ol className="version-list">
        {versions?.map((version) => (
          <li key={version.number}>
            <strong>{t("version", { number: version.number })}</strong>{" "}
            <span className="muted">
              {version.created_by ?? ""} · {new Date(version.created_at).toLocaleString(i18n.language)}
            </span>
            {version.changelog && <p className="changelog">{version.changelog}</p>}
            {props.canPublish && (
              <button type="button" onClick={() => rollback(version.number)}>
                {t("rollback")}
              </button>
            )}
          </li>
        ))}
      </ol>
      {versions && versions.length > 0 && (
        <div className="diff-controls toolbar">
          <label>
            {t("compare_from")}{" "}
            <select value={String(from)} onChange={(e) => setFrom(parse(e.target.value))}>
              {options}
            </select>
          </label>
          <label>
            {t("compare_to")}{" "}
            <select value={String(to)} onChange={(e) => setTo(parse(e.target.value))}>
              {options}
            </select>
          </label>
          <button type="button" onClick={compare}>
            {t("compare")}
          </button>
        </div>
      )}
      {diff && (
        <div className="diff" aria-live="polite">
          {empty && <p className="muted">{t("diff_none")}</p>}
          {sections.map(([key, title]) => {
            const part = diff[key] as DiffPart;
            if (!part.added.length && !part.removed.length && !part.changed.length) return null;
            return (
              <div key={key} className="diff-section">
                <h3>{title}</h3>
                <ul>
                  {part.added.map((id) => (
                    <li key={`a-${id}`} className="diff-added">
                      + {id} ({t("diff_added")})
                    </li>
                  ))}
                  {part.removed.map((id) => (
                    <li key={`r-${id}`} className="diff-removed">
                      − {id} ({t("diff_removed")})
                    </li>
                  ))}
                  {part.changed.map((change) => (
                    <li key={`c-${change.id}`} className="diff-changed">
                      ~ {change.id} ({t("diff_changed")})
                      <ul>
                        {Object.entries(change.fields).map(([field, [before, after]]) => (
                          <li key={field}>
                            <code>{field}</code>: <del>{short(before)}</del> → <ins>{short(after)}</ins>
                          </li>
                        ))}
                      </ul>
                    </li>
                  ))}
                </ul>
              </div>
            );
          })}
          {Object.keys(variables).length > 0 && (
            <div className="diff-section">
              <h3>{t("diff_variables")}</h3>
              <ul>
                {Object.entries(variables).map(([name, [before, after]]) => (
                  <li key={name}>
                    <code>{name}</code>: <del>{short(before)}</del> → <ins>{short(after)}</ins>
                  </li>
                ))}
              </ul>
            </div>
          )}
        </div>
      )}
    </section>
  );
}
