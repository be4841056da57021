import { useId, useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../../shared/api";
import { search } from "./client";
import { errorMessage, fieldErrors } from "./errors";
import { formatScore, parseTopK } from "./format";
import type { KnowledgeDocument, SearchMode, SearchResult } from "./types";

const MODES: SearchMode[] = ["hybrid", "vector", "keyword"];

export function HitTestPanel({
  baseId,
  documents,
}: {
  baseId: number;
  documents: readonly KnowledgeDocument[];
}) {
  const { t } = useTranslation("knowledge");
  const id = useId();
  const [query, setQuery] = useState("");
  const [mode, setMode] = useState<SearchMode>("hybrid");
  const [topK, setTopK] = useState("5");
  const [result, setResult] = useState<SearchResult | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [general, setGeneral] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const problems: Record<string, string> = {};
    if (!query.trim()) problems.query = t("query_required");
    const k = parseTopK(topK);
    if (k === null) problems.top_k = t("top_k_range");
    setErrors(problems);
    setGeneral("");
    if (Object.keys(problems).length || k === null) return;
    setBusy(true);
    try {
      setResult(await search(baseId, query.trim(), mode, k));
    } catch (failure) {
      setResult(null);
      if (failure instanceof ApiError && failure.status === 400) {
        const split = fieldErrors(failure.body, ["query", "top_k", "mode"]);
        setErrors(split.fields);
        setGeneral(split.general.join(" "));
      } else if (failure instanceof ApiError && failure.status === 503) {
        setGeneral(t("search_unavailable", { reason: errorMessage(failure) }));
      } else {
        setGeneral(errorMessage(failure));
      }
    } finally {
      setBusy(false);
    }
  }

  const filenames = new Map(documents.map((document) => [document.id, document.filename]));
  const described = (field: string, hint?: string) =>
    [errors[field] ? `${id}-${field}-error` : "", hint ?? ""].filter(Boolean).join(" ") ||
    undefined;
  const fieldError = (field: string) =>
    errors[field] ? (
      <p id={`${id}-${field}-error`} className="error-text kb-field-error">
        {errors[field]}
      </p>
    ) : null;

  return (
    <section className="kb-panel" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>{t("hit_title")}</h2>
      <p className="muted kb-hint">{t("hit_intro")}</p>
      <form className="kb-hit-form" onSubmit={submit} noValidate>
        <div className="field kb-hit-query">
          <label htmlFor={`${id}-query`}>{t("field_query")}</label>
          <textarea
            id={`${id}-query`}
            rows={2}
            value={query}
            maxLength={2000}
            onChange={(event) => setQuery(event.currentTarget.value)}
            onKeyDown={(event) => {
              if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
                event.currentTarget.form?.requestSubmit();
              }
            }}
            aria-invalid={errors.query ? true : undefined}
            aria-describedby={described("query")}
          />
          {fieldError("query")}
        </div>
        <div className="kb-hit-options">
          <div className="field">
            <label htmlFor={`${id}-mode`}>{t("field_mode")}</label>
            <select
              id={`${id}-mode`}
              value={mode}
              onChange={(event) => setMode(event.currentTarget.value as SearchMode)}
              aria-describedby={described("mode", `${id}-mode-hint`)}
            >
              {MODES.map((value) => (
                <option key={value} value={value}>
                  {t(`mode_${value}`)}
                </option>
              ))}
            </select>
            {fieldError("mode")}
          </div>
          <div className="field">
            <label htmlFor={`${id}-top-k`}>{t("field_top_k")}</label>
            <input
              id={`${id}-top-k`}
              type="number"
              min={1}
              max={50}
              value={topK}
              onChange={(event) => setTopK(event.currentTarget.value)}
              aria-invalid={errors.top_k ? true : undefined}
              aria-describedby={described("top_k")}
            />
            {fieldError("top_k")}
          </div>
          <button type="submit" className="primary kb-hit-submit" disabled={busy}>
            {busy ? t("searching") : t("search")}
          </button>
        </div>
        <p id={`${id}-mode-hint`} className="muted kb-hint">
          {t(`mode_${mode}_hint`)}
        </p>
      </form>
      {general && (
        <p className="notice error" role="alert">
          {general}
        </p>
      )}
      <div aria-live="polite" aria-busy={busy}>
        {result && (
          <>
            <h3 className="kb-results-title">
              {t("results_count", { count: result.passages.length })}
            </h3>
            {result.rerank_error && <p className="notice warn">{result.rerank_error}</p>}
            {result.passages.length === 0 ? (
              <p className="muted">{t("no_results")}</p>
            ) : (
              <ol className="kb-passages">
                {result.passages.map((passage, index) => (
                  <li key={passage.chunk_id} className="kb-passage">
                    <div className="kb-passage-head">
                      <span className="kb-rank" aria-hidden="true">
                        {index + 1}
                      </span>
                      <span className="kb-passage-source">
                        <strong>
                          {filenames.get(passage.document_id) ?? passage.document_title}
                        </strong>
                        {passage.location && (
                          <span className="muted">
                            {" · "}
                            {t("location", { location: passage.location })}
                          </span>
                        )}
                      </span>
                      <span className="kb-score">
                        {t("score", { score: formatScore(passage.score) })}
                      </span>
                    </div>
                    <p className="kb-passage-text">{passage.text}</p>
                  </li>
                ))}
              </ol>
            )}
          </>
        )}
      </div>
    </section>
  );
}
