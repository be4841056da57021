import { useEffect, useId, useReducer, useRef, useState, type DragEvent } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../../shared/api";
import { uploadDocument } from "./client";
import { errorMessage } from "./errors";
import { formatBytes } from "./format";
import type { KnowledgeDocument } from "./types";
import {
  ACCEPTED_EXTENSIONS,
  progressPercent,
  startable,
  uploadCounts,
  uploadsReducer,
  validateFile,
  type FileProblem,
  type UploadItem,
} from "./uploads";

interface Props {
  baseId: number;
  onUploaded: (documents: KnowledgeDocument[]) => void;
  onForbidden: () => void;
  onAnnounce: (text: string) => void;
}

const FORMATS = "PDF, DOCX, PPTX, XLSX, HTML, Markdown, TXT";

let nextKey = 0;

export function UploadPanel({ baseId, onUploaded, onForbidden, onAnnounce }: Props) {
  const { t, i18n } = useTranslation("knowledge");
  const id = useId();
  const [items, dispatch] = useReducer(uploadsReducer, []);
  const [dragging, setDragging] = useState(false);
  const files = useRef(new Map<string, File>());
  const callbacks = useRef({ onUploaded, onForbidden, onAnnounce });
  callbacks.current = { onUploaded, onForbidden, onAnnounce };

  useEffect(() => {
    for (const key of startable(items)) {
      const file = files.current.get(key);
      if (!file) continue;
      files.current.delete(key);
      dispatch({ type: "start", key });
      uploadDocument(baseId, file, (loaded, total) =>
        dispatch({ type: "progress", key, loaded, total }),
      ).then(
        (created) => {
          dispatch({ type: "uploaded", key, documentId: created[0]?.id });
          callbacks.current.onUploaded(created);
          callbacks.current.onAnnounce(t("announce_uploaded", { name: file.name }));
        },
        (failure: unknown) => {
          let message: string;
          if (failure instanceof ApiError && failure.status === 403) {
            message = t("forbidden_manage");
            callbacks.current.onForbidden();
          } else if (failure instanceof ApiError && failure.status === 0) {
            message = t("network_error");
          } else {
            message = errorMessage(failure);
          }
          dispatch({ type: "error", key, message });
          callbacks.current.onAnnounce(t("announce_refused", { name: file.name, reason: message }));
        },
      );
    }
  }, [items, baseId, t]);

  function add(chosen: File[]) {
    if (!chosen.length) return;
    const entries = chosen.map((file) => {
      nextKey += 1;
      const key = `upload-${nextKey}`;
      files.current.set(key, file);
      return { key, name: file.name, size: file.size };
    });
    dispatch({ type: "add", files: entries });
    const refused = entries.filter((entry) => validateFile(entry) !== null).length;
    if (refused) onAnnounce(t("announce_invalid", { count: refused }));
  }

  function drop(event: DragEvent<HTMLDivElement>) {
    event.preventDefault();
    setDragging(false);
    add(Array.from(event.dataTransfer.files));
  }

  const problemText = (problem: FileProblem) => {
    switch (problem.code) {
      case "type":
        return t("problem_type", {
          extension: problem.extension || t("no_extension"),
          formats: FORMATS,
        });
      case "empty":
        return t("problem_empty");
      case "too_large":
        return t("problem_too_large", { size: formatBytes(problem.limitBytes, i18n.language) });
      case "too_many":
        return t("problem_too_many", { limit: problem.limit });
    }
  };

  const stateText = (item: UploadItem) => {
    switch (item.state) {
      case "invalid":
        return t("upload_invalid");
      case "waiting":
        return t("upload_waiting");
      case "uploading":
        return t("upload_uploading", { percent: progressPercent(item) });
      case "uploaded":
        return t("upload_done");
      case "error":
        return t("upload_error");
    }
  };

  const counts = uploadCounts(items);
  return (
    <section className="kb-panel" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>{t("upload_title")}</h2>
      <div
        className={`kb-dropzone${dragging ? " is-dragging" : ""}`}
        onDragEnter={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragOver={(event) => {
          event.preventDefault();
          event.dataTransfer.dropEffect = "copy";
        }}
        onDragLeave={(event) => {
          if (!event.currentTarget.contains(event.relatedTarget as Node | null)) setDragging(false);
        }}
        onDrop={drop}
        data-testid="dropzone"
      >
        <input
          id={`${id}-files`}
          className="kb-file-input"
          type="file"
          multiple
          accept={ACCEPTED_EXTENSIONS.join(",")}
          aria-describedby={`${id}-hint`}
          onChange={(event) => {
            add(Array.from(event.currentTarget.files ?? []));
            event.currentTarget.value = "";
          }}
        />
        <label htmlFor={`${id}-files`} className="button primary kb-file-button">
          {t("choose_files")}
        </label>
        <p className="kb-drop-text">{t("drop_here")}</p>
        <p id={`${id}-hint`} className="muted kb-hint">
          {t("upload_hint", { formats: FORMATS })}
        </p>
      </div>
      {items.length > 0 && (
        <>
          <div className="kb-section-head">
            <h3 className="kb-uploads-title">
              {t("uploads_summary", {
                active: counts.active,
                uploaded: counts.uploaded,
                failed: counts.failed,
              })}
            </h3>
            {counts.active < items.length && (
              <button type="button" onClick={() => dispatch({ type: "clear" })}>
                {t("clear_finished")}
              </button>
            )}
          </div>
          <ul className="kb-uploads">
            {items.map((item) => (
              <li key={item.key} className={`kb-upload kb-upload-${item.state}`}>
                <div className="kb-upload-line">
                  <span className="kb-upload-name">{item.name}</span>
                  <span className="muted">{formatBytes(item.size, i18n.language)}</span>
                  <span className="kb-upload-state">{stateText(item)}</span>
                </div>
                {item.state !== "invalid" && (
                  <progress aria-label={item.name} max={100} value={progressPercent(item)} />
                )}
                {item.problem && (
                  <p className="error-text kb-upload-message">{problemText(item.problem)}</p>
                )}
                {item.message && <p className="error-text kb-upload-message">{item.message}</p>}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
