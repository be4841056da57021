import { useCallback, useEffect, useRef, useState } from "react";
import { useTranslation } from "react-i18next";
import { ApiError } from "../../shared/api";
import { linkHandler, STUDIO_ROOT } from "../router";
import {
  deleteDocument,
  getBase,
  getDocument,
  listDocuments,
  retryDocument,
  setEnabled,
} from "./client";
import { ConfirmDialog } from "./ConfirmDialog";
import { DocumentTable } from "./DocumentTable";
import {
  applyStatus,
  POLL_INTERVAL_MS,
  removeDocument,
  replaceDocuments,
  shouldPoll,
  upsertDocuments,
} from "./documents";
import { errorMessage } from "./errors";
import { HitTestPanel } from "./HitTestPanel";
import "./knowledge.css";
import "./locales";
import { isWorking, statusLabelKey, summarize } from "./status";
import type { KnowledgeBase, KnowledgeDocument, StatusUpdate } from "./types";
import { UploadPanel } from "./UploadPanel";
import { useDocumentFeed } from "./useDocumentFeed";

type Notice = { tone: "error" | "ok"; text: string } | null;

export function KnowledgeBasePage({ baseId }: { baseId: number }) {
  const { t } = useTranslation("knowledge");
  const [base, setBase] = useState<KnowledgeBase | null>(null);
  const [loadError, setLoadError] = useState<"not_found" | string | null>(null);
  const [documents, setDocuments] = useState<KnowledgeDocument[] | null>(null);
  const [canManage, setCanManage] = useState<boolean | null>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [announcement, setAnnouncement] = useState("");
  const [busy, setBusy] = useState<ReadonlySet<string>>(new Set());
  const [toDelete, setToDelete] = useState<KnowledgeDocument | null>(null);
  const documentsHeading = useRef<HTMLHeadingElement>(null);
  const known = useRef<KnowledgeDocument[]>([]);
  known.current = documents ?? [];

  useEffect(() => {
    let current = true;
    getBase(baseId).then(
      (found) => {
        if (!current) return;
        setBase(found);
        setCanManage((found.permissions ?? []).includes("manage_documents"));
      },
      (failure: unknown) => {
        if (!current) return;
        if (failure instanceof ApiError && failure.status === 404) setLoadError("not_found");
        else setLoadError(t("load_failed", { reason: errorMessage(failure) }));
      },
    );
    return () => {
      current = false;
    };
  }, [baseId, t]);

  const refresh = useCallback(() => {
    listDocuments(baseId).then(
      (fresh) => setDocuments((previous) => replaceDocuments(previous ?? [], fresh)),
      (failure: unknown) => {
        if (failure instanceof ApiError && failure.status === 404) setLoadError("not_found");
        else {
          setNotice({ tone: "error", text: t("load_failed", { reason: errorMessage(failure) }) });
        }
      },
    );
  }, [baseId, t]);

  useEffect(() => {
    if (base) refresh();
  }, [base, refresh]);

  const fetchOne = useCallback((id: string) => {
    getDocument(id).then(
      (document) => setDocuments((previous) => upsertDocuments(previous ?? [], [document])),
      () => undefined, // deleted meanwhile: the next list answer settles it
    );
  }, []);

  const onUpdate = useCallback(
    (update: StatusUpdate) => {
      const before = known.current.find((document) => document.id === update.id);
      setDocuments((previous) => applyStatus(previous ?? [], update).documents);
      if (!before || !isWorking(update.status)) {
        // New to this page, or finished: the full row has what the message lacks (pages).
        fetchOne(update.id);
      }
      if (before && before.status !== update.status && !isWorking(update.status)) {
        setAnnouncement(
          t("announce_status", { name: before.filename, status: t(statusLabelKey(update.status)) }),
        );
      }
    },
    [fetchOne, t],
  );

  const feed = useDocumentFeed(base ? baseId : null, onUpdate, refresh);

  const polling = shouldPoll(feed, documents ?? []);
  useEffect(() => {
    if (!polling) return;
    const timer = setInterval(refresh, POLL_INTERVAL_MS);
    return () => clearInterval(timer);
  }, [polling, refresh]);

  const forbidden = () => {
    setCanManage(false);
    setNotice({ tone: "error", text: t("forbidden_manage") });
  };

  async function act(document: KnowledgeDocument, action: () => Promise<void>) {
    setBusy((previous) => new Set(previous).add(document.id));
    setNotice(null);
    try {
      await action();
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 403) forbidden();
      else if (failure instanceof ApiError && failure.status === 404) {
        setDocuments((previous) => removeDocument(previous ?? [], document.id));
        setNotice({ tone: "error", text: t("document_gone", { name: document.filename }) });
      } else {
        setNotice({
          tone: "error",
          text: t("action_failed", { name: document.filename, reason: errorMessage(failure) }),
        });
      }
    } finally {
      setBusy((previous) => {
        const next = new Set(previous);
        next.delete(document.id);
        return next;
      });
    }
  }

  const toggle = (document: KnowledgeDocument, enabled: boolean) =>
    act(document, async () => {
      const changed = await setEnabled(document.id, enabled);
      setDocuments((previous) => upsertDocuments(previous ?? [], [changed]));
      setAnnouncement(
        t(enabled ? "announce_enabled" : "announce_disabled", { name: document.filename }),
      );
    });

  const retry = (document: KnowledgeDocument) =>
    act(document, async () => {
      const changed = await retryDocument(document.id);
      setDocuments((previous) => upsertDocuments(previous ?? [], [changed]));
      setAnnouncement(t("announce_retry", { name: document.filename }));
    });

  const confirmDelete = () => {
    const document = toDelete;
    setToDelete(null);
    if (!document) return;
    void act(document, async () => {
      await deleteDocument(document.id);
      setDocuments((previous) => removeDocument(previous ?? [], document.id));
      setNotice({ tone: "ok", text: t("deleted", { name: document.filename }) });
      // Its row (and the button that had the focus) is gone: keep the focus nearby.
      documentsHeading.current?.focus();
    });
  };

  const back = (
    <a
      className="kb-back"
      href={`${STUDIO_ROOT}knowledge`}
      onClick={linkHandler(`${STUDIO_ROOT}knowledge`)}
    >
      {t("back_to_list")}
    </a>
  );

  if (loadError) {
    return (
      <div className="page kb-page">
        {back}
        <h1>{t("base_title_unknown")}</h1>
        <p className="notice error" role="alert">
          {loadError === "not_found" ? t("base_not_found") : loadError}
        </p>
      </div>
    );
  }
  if (!base) {
    return (
      <div className="page kb-page">
        {back}
        <p className="muted" role="status">
          {t("loading")}
        </p>
      </div>
    );
  }

  const summary = summarize(documents ?? []);
  return (
    <div className="page kb-page">
      {back}
      <h1>{base.name}</h1>
      {base.description && <p className="kb-intro">{base.description}</p>}
      <p className="muted kb-meta">
        {t("base_meta", { size: base.chunk_size, overlap: base.chunk_overlap })}
      </p>
      <div className="visually-hidden" role="status" aria-live="polite">
        {announcement}
      </div>
      {notice && (
        <p className={`notice ${notice.tone}`} role={notice.tone === "error" ? "alert" : "status"}>
          {notice.text}
        </p>
      )}
      {canManage === false && <p className="notice warn">{t("read_only")}</p>}
      {canManage && (
        <UploadPanel
          baseId={baseId}
          onUploaded={(created) =>
            setDocuments((previous) => upsertDocuments(previous ?? [], created))
          }
          onForbidden={forbidden}
          onAnnounce={setAnnouncement}
        />
      )}
      <section className="kb-panel" aria-labelledby="kb-documents-heading">
        <div className="kb-section-head">
          <h2 id="kb-documents-heading" ref={documentsHeading} tabIndex={-1}>
            {t("documents_title")}
          </h2>
          <span className={`kb-feed kb-feed-${feed}`}>{t(`feed_${feed}`)}</span>
        </div>
        {documents === null ? (
          <p className="muted" role="status">
            {t("loading")}
          </p>
        ) : (
          <>
            <p className="muted kb-summary">
              {summary.total === 0
                ? t(canManage ? "no_documents_upload" : "no_documents")
                : t("summary", {
                    count: summary.total,
                    ready: summary.ready,
                    working: summary.working,
                    failed: summary.failed,
                  })}
            </p>
            {summary.total > 0 && (
              <DocumentTable
                caption={t("documents_caption", { name: base.name })}
                documents={documents}
                canManage={canManage === true}
                busy={busy}
                onToggle={toggle}
                onRetry={retry}
                onDelete={setToDelete}
              />
            )}
          </>
        )}
      </section>
      <HitTestPanel baseId={baseId} documents={documents ?? []} />
      <ConfirmDialog
        open={toDelete !== null}
        title={t("delete_title")}
        message={toDelete ? t("delete_message", { name: toDelete.filename }) : ""}
        confirmLabel={t("delete_confirm")}
        onConfirm={confirmDelete}
        onCancel={() => setToDelete(null)}
      />
    </div>
  );
}
