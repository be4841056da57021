// The conversation: messages, the streamed answer growing, the typing signal, the connection
// line and the input. Shared by the full page and the widget; all state is the client's.
import {
  useEffect,
  useId,
  useLayoutEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type FormEvent,
  type KeyboardEvent,
} from "react";
import type { Language } from "../shared/i18n";
import { MAX_TEXT, type ChatClient, type ChatEntry, type ConnectionState } from "./client";
import { translator, type Translate } from "./strings";

export interface ChatViewProps {
  client: ChatClient;
  title: string;
  language: Language;
  /** "page": a heading of level 1; "widget": a panel with a close button. */
  variant: "page" | "widget";
  onClose?: () => void;
  autoFocus?: boolean;
}

function useCountdown(state: ConnectionState): number {
  const retryAt = state.kind === "reconnecting" ? state.retryAt : 0;
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!retryAt) return;
    setNow(Date.now());
    const timer = window.setInterval(() => setNow(Date.now()), 250);
    return () => window.clearInterval(timer);
  }, [retryAt]);
  return Math.max(0, Math.ceil((retryAt - now) / 1000));
}

function statusLabel(state: ConnectionState, t: Translate): string {
  switch (state.kind) {
    case "connecting":
      return state.retry ? t("reconnecting") : t("connecting");
    case "online":
      return t("online");
    case "reconnecting":
      return t("reconnecting");
    case "offline":
      return t(`offline_${state.reason}`);
  }
}

function Message({ entry, t }: { entry: ChatEntry; t: Translate }) {
  const mine = entry.role === "user";
  const streaming = entry.status === "streaming";
  return (
    <li
      className={`asc-msg ${mine ? "asc-msg-user" : "asc-msg-assistant"}`}
      data-role={entry.role}
      data-status={entry.status}
      aria-busy={streaming || undefined}
    >
      <span className="asc-vh">{mine ? t("you_said") : t("assistant_said")}: </span>
      <div className="asc-bubble">
        {entry.text}
        {streaming && <span className="asc-caret" aria-hidden="true" />}
      </div>
      {entry.status === "sending" && <span className="asc-meta">{t("sending")}</span>}
      {entry.status === "failed" && <span className="asc-meta asc-meta-failed">{t("not_sent")}</span>}
    </li>
  );
}

export function ChatView({ client, title, language, variant, onClose, autoFocus }: ChatViewProps) {
  const snapshot = useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
  const t = useMemo(() => translator(language), [language]);
  const [draft, setDraft] = useState("");
  const inputId = useId();
  const hintId = useId();
  const headingId = useId();
  const logRef = useRef<HTMLOListElement>(null);
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const pinned = useRef(true); // follow new text unless the reader scrolled up
  const seconds = useCountdown(snapshot.state);
  const { state, entries, typing, error } = snapshot;
  const halted = state.kind === "offline";
  const shownTitle = title || snapshot.title;
  const streaming = entries.some((entry) => entry.status === "streaming");

  useLayoutEffect(() => {
    const log = logRef.current;
    if (log && pinned.current) log.scrollTop = log.scrollHeight;
  }, [entries, typing]);

  useEffect(() => {
    if (autoFocus) inputRef.current?.focus();
  }, [autoFocus]);

  const submit = () => {
    if (client.send(draft) !== null) setDraft("");
  };

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    submit();
  };

  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter while an input method is composing (Chinese, Japanese) picks a candidate.
    if (event.key !== "Enter" || event.shiftKey || event.nativeEvent.isComposing) return;
    if (event.keyCode === 229) return;
    event.preventDefault();
    submit();
  };

  const Heading = variant === "page" ? "h1" : "h2";
  return (
    <section className={`asc-chat asc-chat-${variant}`} aria-labelledby={headingId} lang={language}>
      <header className="asc-header">
        <Heading id={headingId} className="asc-title">
          {shownTitle}
        </Heading>
        {onClose && (
          <button type="button" className="asc-close" onClick={onClose} aria-label={t("close_chat")}>
            <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false">
              <path d="M6 6l12 12M18 6L6 18" stroke="currentColor" strokeWidth="2" strokeLinecap="round" />
            </svg>
          </button>
        )}
      </header>
      <div className="asc-statusbar" data-state={state.kind}>
        <p className="asc-status" role="status">
          <span className="asc-dot" aria-hidden="true" />
          {state.kind === "reconnecting" ? (
            <>
              {/* The countdown changes every second: shown, not announced. */}
              <span aria-hidden="true">{t("reconnecting_in", { seconds })}</span>
              <span className="asc-vh">{t("reconnecting")}</span>
            </>
          ) : (
            statusLabel(state, t)
          )}
        </p>
        {state.kind === "reconnecting" && (
          <button type="button" className="asc-retry" onClick={() => client.retryNow()}>
            {t("retry_now")}
          </button>
        )}
      </div>
      <ol
        className="asc-log"
        role="log"
        aria-label={t("conversation")}
        ref={logRef}
        tabIndex={0}
        onScroll={(event) => {
          const log = event.currentTarget;
          pinned.current = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
        }}
      >
        {entries.length === 0 && !halted && <li className="asc-empty">{t("empty")}</li>}
        {entries.map((entry) => (
          <Message key={`${entry.role}:${entry.id}`} entry={entry} t={t} />
        ))}
        {typing && !streaming && (
          <li className="asc-typing" data-role="typing">
            <span className="asc-dots" aria-hidden="true">
              <span />
              <span />
              <span />
            </span>
            <span className="asc-vh">{t("typing")}</span>
          </li>
        )}
      </ol>
      {error && (
        <p className="asc-error" role="alert">
          {t("error_prefix", { detail: error })}
        </p>
      )}
      <form className="asc-compose" onSubmit={onSubmit}>
        <label htmlFor={inputId} className="asc-label">
          {t("message_label")}
        </label>
        <div className="asc-row">
          <textarea
            id={inputId}
            ref={inputRef}
            className="asc-input"
            rows={1}
            maxLength={MAX_TEXT}
            value={draft}
            placeholder={t("message_placeholder")}
            aria-describedby={hintId}
            disabled={halted}
            onChange={(event) => setDraft(event.target.value)}
            onKeyDown={onKeyDown}
          />
          <button type="submit" className="asc-send" disabled={halted || !draft.trim()}>
            {t("send")}
          </button>
        </div>
        <p id={hintId} className="asc-hint">
          {state.kind === "reconnecting" || (state.kind === "connecting" && state.retry)
            ? t("queued_hint")
            : t("message_hint")}
        </p>
      </form>
    </section>
  );
}
