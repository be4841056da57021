// The embeddable widget. /chat/widget.js (frontend/views.py widget_loader) pushes one config
// per <script data-connector=...> onto window.AssistantStudioChat and loads this module from
// the studio; every config becomes a launcher button (bottom right) that opens a chat panel.
// Each lives in a shadow root, so the host page's CSS does not reach it, and talks to the
// studio's origin (config.origin), never to the host page's.
import { useEffect, useId, useRef, useState, useSyncExternalStore, type KeyboardEvent } from "react";
import { createRoot } from "react-dom/client";
import { languageFrom, type Language } from "../shared/i18n";
import { ChatView } from "./ChatView";
import { ChatClient, storageKey } from "./client";
import { translator } from "./strings";
import css from "./chat.css?inline";

export interface WidgetConfig {
  connector: number | string;
  /** The launcher's and panel's title; default: the connector's, once connected. */
  title?: string;
  /** The studio's origin (where widget.js came from). */
  origin: string;
  /** The session endpoint's path with "{id}" for the connector (the loader passes it). */
  session?: string;
  /** "en", "zh-Hans"...; default: the browser's language. */
  language?: string;
}

declare global {
  interface Window {
    AssistantStudioChat?: WidgetConfig[];
    /** Widgets mounted on this page (origin|connector): two loaders never mount one twice. */
    __assistantStudioChatMounted?: Set<string>;
  }
}

const DEFAULT_SESSION = "/connectors/{id}/webchat/session";

function readFlag(key: string): boolean {
  try {
    return window.sessionStorage.getItem(key) === "1";
  } catch {
    return false;
  }
}

function writeFlag(key: string, on: boolean): void {
  try {
    if (on) window.sessionStorage.setItem(key, "1");
    else window.sessionStorage.removeItem(key);
  } catch {
    // blocked storage: the panel just starts closed on the next page
  }
}

function Widget({ config, client, language }: { config: WidgetConfig; client: ChatClient; language: Language }) {
  const t = translator(language);
  // Open stays open across the host site's pages (same tab), like a conversation should.
  const openKey = `${storageKey(config.origin, config.connector)}:open`;
  const [open, setOpen] = useState(() => readFlag(openKey));
  const [opened, setOpened] = useState(open);
  const snapshot = useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
  const launcher = useRef<HTMLButtonElement>(null);
  const panelId = useId();
  const title = config.title || snapshot.title || t("launcher");

  useEffect(() => {
    writeFlag(openKey, open);
    if (open) {
      setOpened(true);
      client.start(); // the socket opens when the visitor first opens the chat
    }
  }, [open, openKey, client]);

  const close = () => {
    setOpen(false);
    launcher.current?.focus();
  };
  const onKeyDown = (event: KeyboardEvent) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
    }
  };

  return (
    <div className="asc-root" lang={language}>
      <div id={panelId} className="asc-panel" role="dialog" aria-label={title} hidden={!open} onKeyDown={onKeyDown}>
        {opened && (
          <ChatView client={client} title={title} language={language} variant="widget" onClose={close} autoFocus={open} />
        )}
      </div>
      <button
        ref={launcher}
        type="button"
        className="asc-launcher"
        aria-expanded={open}
        aria-controls={panelId}
        onClick={() => setOpen((was) => !was)}
      >
        <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false">
          <path
            d="M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.5 4v-4A2.5 2.5 0 0 1 3 13.5"
            fill="none"
            stroke="currentColor"
            strokeWidth="2"
            strokeLinejoin="round"
          />
        </svg>
        <span>{title}</span>
      </button>
    </div>
  );
}

function styleShadow(shadow: ShadowRoot): void {
  // A constructed stylesheet is not subject to the host page's CSP style-src; older browsers
  // get a <style> element.
  if ("adoptedStyleSheets" in shadow && typeof CSSStyleSheet === "function") {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      shadow.adoptedStyleSheets = [sheet];
      return;
    } catch {
      // fall through
    }
  }
  const style = document.createElement("style");
  style.textContent = css;
  shadow.appendChild(style);
}

export function mount(config: WidgetConfig): void {
  if (!config || !config.connector || !config.origin) return;
  const mounted = (window.__assistantStudioChatMounted ??= new Set());
  const id = `${config.origin}|${config.connector}`;
  if (mounted.has(id)) return;
  mounted.add(id);
  const language = languageFrom(config.language || navigator.language);
  const client = new ChatClient({
    connector: config.connector,
    origin: config.origin,
    sessionUrl: (config.session || DEFAULT_SESSION).replace("{id}", encodeURIComponent(String(config.connector))),
  });
  window.addEventListener("online", () => client.retryNow());

  // A custom element: host page rules for div and the like do not match it, and its own
  // properties are reset so none are inherited into the shadow root.
  const host = document.createElement("assistant-studio-chat");
  host.style.setProperty("all", "initial");
  host.dataset.connector = String(config.connector);
  const shadow = host.attachShadow({ mode: "open" });
  styleShadow(shadow);
  const container = document.createElement("div");
  shadow.appendChild(container);
  document.body.appendChild(host);
  createRoot(container).render(<Widget config={config} client={client} language={language} />);
}

function boot(): void {
  const queue = (window.AssistantStudioChat ??= []);
  for (const config of queue) mount(config);
  // Configs pushed later (a loader that ran after this module, a single-page app adding
  // the tag) mount as they come; the previous push (another studio's widget) still runs.
  const previous = queue.push.bind(queue);
  queue.push = (...configs: WidgetConfig[]): number => {
    for (const config of configs) mount(config);
    return previous(...configs);
  };
}

if (document.body) boot();
else document.addEventListener("DOMContentLoaded", boot, { once: true });
