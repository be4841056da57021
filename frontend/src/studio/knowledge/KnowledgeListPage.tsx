import { useEffect, useId, useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../../shared/api";
import type { StudioBoot } from "../boot";
import { linkHandler, navigate, STUDIO_ROOT } from "../router";
import { createBase, listBases } from "./client";
import { errorMessage, fieldErrors, type FieldErrors } from "./errors";
import "./knowledge.css";
import "./locales";
import type { KnowledgeBase } from "./types";

const basePath = (id: number) => `${STUDIO_ROOT}knowledge/${id}`;

export function KnowledgeListPage({ boot }: { boot: StudioBoot }) {
  const { t, i18n } = useTranslation("knowledge");
  const canCreate = boot.user.permissions.includes("knowledge.add_knowledgebase");
  const [bases, setBases] = useState<KnowledgeBase[] | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    let current = true;
    listBases().then(
      (found) => current && setBases(found),
      (failure: unknown) =>
        current && setError(t("load_failed", { reason: errorMessage(failure) })),
    );
    return () => {
      current = false;
    };
  }, [t]);

  const dates = new Intl.DateTimeFormat(i18n.language, { dateStyle: "medium" });
  return (
    <div className="page kb-page">
      <h1>{t("list_title")}</h1>
      <p className="muted kb-intro">{t("list_intro")}</p>
      {error && (
        <p className="notice error" role="alert">
          {error}
        </p>
      )}
      <div className={canCreate ? "kb-list-layout" : undefined}>
        <section aria-labelledby="kb-bases-heading">
          <h2 id="kb-bases-heading" className="visually-hidden">
            {t("list_title")}
          </h2>
          {bases === null && !error && (
            <p className="muted" role="status">
              {t("loading")}
            </p>
          )}
          {bases !== null && bases.length === 0 && (
            <p className="kb-empty">{canCreate ? t("list_empty_create") : t("list_empty")}</p>
          )}
          {bases !== null && bases.length > 0 && (
            <table className="list kb-bases">
              <thead>
                <tr>
                  <th scope="col">{t("col_name")}</th>
                  <th scope="col">{t("col_description")}</th>
                  <th scope="col" className="kb-num">
                    {t("col_documents")}
                  </th>
                  <th scope="col">{t("col_updated")}</th>
                </tr>
              </thead>
              <tbody>
                {bases.map((base) => (
                  <tr key={base.id}>
                    <td>
                      <a href={basePath(base.id)} onClick={linkHandler(basePath(base.id))}>
                        {base.name}
                      </a>
                    </td>
                    <td className="kb-description">
                      {base.description || <span className="muted">{t("no_description")}</span>}
                    </td>
                    <td className="kb-num">{base.document_count}</td>
                    <td>
                      <time dateTime={base.updated_at}>
                        {dates.format(new Date(base.updated_at))}
                      </time>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        {canCreate && <CreateBaseForm onCreated={(base) => navigate(basePath(base.id))} />}
      </div>
    </div>
  );
}

const FIELDS = ["name", "description", "chunk_size", "chunk_overlap"] as const;
type Field = (typeof FIELDS)[number];

function CreateBaseForm({ onCreated }: { onCreated: (base: KnowledgeBase) => void }) {
  const { t } = useTranslation("knowledge");
  const id = useId();
  const [values, setValues] = useState<Record<Field, string>>({
    name: "",
    description: "",
    chunk_size: "500",
    chunk_overlap: "50",
  });
  const [errors, setErrors] = useState<FieldErrors>({ fields: {}, general: [] });
  const [busy, setBusy] = useState(false);

  const set = (field: Field) => (event: { currentTarget: { value: string } }) => {
    const value = event.currentTarget.value;
    setValues((previous) => ({ ...previous, [field]: value }));
  };

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    setBusy(true);
    setErrors({ fields: {}, general: [] });
    try {
      const base = await createBase({
        name: values.name.trim(),
        description: values.description,
        // The API checks the numbers; a malformed entry comes back as its field error.
        chunk_size: Number(values.chunk_size),
        chunk_overlap: Number(values.chunk_overlap),
      });
      onCreated(base);
    } catch (failure) {
      setBusy(false);
      if (failure instanceof ApiError && failure.status === 400) {
        setErrors(fieldErrors(failure.body, FIELDS));
      } else if (failure instanceof ApiError && failure.status === 403) {
        setErrors({ fields: {}, general: [t("create_forbidden")] });
      } else {
        setErrors({ fields: {}, general: [errorMessage(failure)] });
      }
    }
  }

  const fieldProps = (field: Field) => {
    const error = errors.fields[field];
    return {
      id: `${id}-${field}`,
      name: field,
      value: values[field],
      onChange: set(field),
      "aria-invalid": error ? true : undefined,
      "aria-describedby":
        [error ? `${id}-${field}-error` : "", field.startsWith("chunk") ? `${id}-chunk-hint` : ""]
          .filter(Boolean)
          .join(" ") || undefined,
    };
  };
  const fieldError = (field: Field) =>
    errors.fields[field] ? (
      <p id={`${id}-${field}-error`} className="error-text kb-field-error">
        {errors.fields[field]}
      </p>
    ) : null;

  return (
    <section className="kb-panel kb-create" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>{t("create_title")}</h2>
      <form onSubmit={submit} noValidate>
        {errors.general.length > 0 && (
          <div className="notice error" role="alert">
            {errors.general.map((message) => (
              <p key={message}>{message}</p>
            ))}
          </div>
        )}
        <div className="field">
          <label htmlFor={`${id}-name`}>{t("field_name")}</label>
          <input {...fieldProps("name")} required aria-required="true" maxLength={200} />
          {fieldError("name")}
        </div>
        <div className="field">
          <label htmlFor={`${id}-description`}>{t("field_description")}</label>
          <textarea {...fieldProps("description")} rows={3} />
          {fieldError("description")}
        </div>
        <div className="kb-field-row">
          <div className="field">
            <label htmlFor={`${id}-chunk_size`}>{t("field_chunk_size")}</label>
            <input {...fieldProps("chunk_size")} type="number" min={100} max={4000} step={50} />
            {fieldError("chunk_size")}
          </div>
          <div className="field">
            <label htmlFor={`${id}-chunk_overlap`}>{t("field_chunk_overlap")}</label>
            <input {...fieldProps("chunk_overlap")} type="number" min={0} max={1999} step={10} />
            {fieldError("chunk_overlap")}
          </div>
        </div>
        <p id={`${id}-chunk-hint`} className="muted kb-hint">
          {t("chunk_hint")}
        </p>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? t("creating") : t("create_submit")}
        </button>
      </form>
    </section>
  );
}
