import { useEffect, useRef, useState, type FormEvent } from "react";
import { useTranslation } from "react-i18next";

export function PublishDialog(props: { onPublish: (changelog: string) => Promise<void>; onClose: () => void }) {
  const { t } = useTranslation("editor");
  const dialog = useRef<HTMLDialogElement>(null);
  const [changelog, setChangelog] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    try {
      await props.onPublish(changelog.trim());
    } finally {
      setBusy(false);
    }
  };
  return (
    <dialog ref={dialog} onClose={props.onClose} aria-labelledby="publish-title">
      <form onSubmit={submit}>
        <h2 id="publish-title">{t("publish_title")}</h2>
        <div className="field">
          <label htmlFor="publish-changelog">{t("changelog")}</label>
          <textarea
            id="publish-changelog"
            rows={3}
            value={changelog}
            onChange={(event) => setChangelog(event.target.value)}
            aria-describedby="publish-changelog-hint"
          />
          <span id="publish-changelog-hint" className="muted">
            {t("changelog_hint")}
          </span>
        </div>
        <div className="toolbar">
          <button type="submit" className="primary" disabled={busy}>
            {t("publish")}
          </button>
          <button type="button" onClick={() => dialog.current?.close()}>
            {t("cancel")}
          </button>
        </div>
      </form>
    </dialog>
  );
}
