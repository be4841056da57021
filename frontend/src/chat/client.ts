// The web chat protocol without a UI framework: the visitor token, the socket, the heartbeat,
// reconnects with backoff, resume and resend after a reconnect, and the transcript the UI
// shows. docs/connectors.md ("Web chat") describes the server's side.
//
// Invariants the UI relies on:
// - a user message keeps its client id (a UUID) until acknowledged and is resent with it
//   after every reconnect, so the server stores it once;
// - replies are keyed by their id: a stream is replaced by the final message with its id,
//   and a reply seen before (a resume overlapping what was shown) is dropped.
import { socketUrl } from "../shared/api";

export type Role = "user" | "assistant";
/** User messages: sending -> sent (acknowledged) | failed (refused by the server).
 *  Replies: streaming -> final. */
export type EntryStatus = "sending" | "sent" | "failed" | "streaming" | "final";

export interface ChatEntry {
  readonly id: string;
  readonly role: Role;
  readonly text: string;
  readonly status: EntryStatus;
  /** For replies: the client id of the user message answered. */
  readonly replyTo?: string;
}

/** Why the client stopped for good: 4404 or a 404 session, 4403 or a 403 session, stop(). */
export type OfflineReason = "not_found" | "forbidden" | "stopped";

export type ConnectionState =
  | { readonly kind: "connecting"; readonly retry: boolean }
  | { readonly kind: "online" }
  | {
      readonly kind: "reconnecting";
      /** Epoch milliseconds (timers.now()) of the next attempt. */
      readonly retryAt: number;
      readonly delayMs: number;
      readonly attempt: number;
    }
  | { readonly kind: "offline"; readonly reason: OfflineReason };

export interface ChatSnapshot {
  readonly state: ConnectionState;
  readonly entries: readonly ChatEntry[];
  readonly typing: boolean;
  /** The server's last complaint about a message ({"type": "error"}), for an alert. */
  readonly error: string;
  /** The connector's title from `ready` ("" before the first one). */
  readonly title: string;
}

/** What the client needs of a WebSocket (the browser's fits; tests pass a fake). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface SessionResponse {
  readonly ok: boolean;
  readonly status: number;
  json(): Promise<unknown>;
}

export type SessionFetch = (url: string, init: RequestInit) => Promise<SessionResponse>;

export interface ChatClientOptions {
  connector: number | string;
  /** The studio's origin (https://studio.example): the session and the socket live there. */
  origin: string;
  /** The session endpoint, absolute or relative to `origin`. */
  sessionUrl: string;
  /** Where the token and the transcript are kept; default localStorage, null for none. */
  storage?: KeyValueStore | null;
  fetch?: SessionFetch;
  createSocket?: (url: string) => SocketLike;
  timers?: Timers;
  /** In [0, 1): the backoff's jitter. */
  random?: () => number;
  newId?: () => string;
  // Test-speed overrides, for unit tests only; the pages and the widget use the defaults.
  /** First reconnect delay (default 1000 ms), doubled after each failure. */
  initialBackoffMs?: number;
  /** Longest reconnect delay (default 30000 ms). */
  maxBackoffMs?: number;
  /** Share of a delay taken off at random (default 0.2: 80 to 100 % of the nominal). */
  jitter?: number;
  /** Silence after which the socket counts as dead (default 75000 ms; pings come every 30 s). */
  deadAfterMs?: number;
  /** How long a typing signal shows without news (default 30000 ms). */
  typingMs?: number;
}

const OPEN = 1;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_NOT_FOUND = 4404;
/** The server's limit on a message's text (connectors/webchat/consumers.py MAX_TEXT). */
export const MAX_TEXT = 20_000;
/** Entries kept in storage: enough for a conversation, small enough for localStorage. */
const KEPT_ENTRIES = 100;

const browserTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};

function defaultStorage(): KeyValueStore | null {
  try {
    // Reading localStorage throws where the host page's site data is blocked.
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/** A UUID v4; crypto.randomUUID exists only in secure contexts (https, localhost). */
export function newMessageId(): string {
  const crypto = globalThis.crypto as Crypto | undefined;
  if (crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (crypto && typeof crypto.getRandomValues === "function") crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The storage key prefix of one connector of one studio (several studios may be embedded). */
export function storageKey(origin: string, connector: number | string): string {
  return `assistant-studio-chat:${origin}:${connector}`;
}

class StopError extends Error {
  constructor(readonly reason: OfflineReason) {
    super(reason);
  }
}

function isEntry(value: unknown): value is ChatEntry {
  if (!value || typeof value !== "object") return false;
  const entry = value as Record<string, unknown>;
  return (
    typeof entry.id === "string" &&
    (entry.role === "user" || entry.role === "assistant") &&
    typeof entry.text === "string" &&
    typeof entry.status === "string"
  );
}

function text(value: unknown): string {
  return typeof value === "string" ? value : "";
}

export class ChatClient {
  private readonly options: ChatClientOptions;
  private readonly timers: Timers;
  private readonly storage: KeyValueStore | null;
  private readonly fetchSession: SessionFetch;
  private readonly createSocket: (url: string) => SocketLike;
  private readonly random: () => number;
  private readonly newId: () => string;
  private readonly key: string;
  private readonly listeners = new Set<() => void>();

  private snapshot: ChatSnapshot;
  private socket: SocketLike | null = null;
  private token = "";
  private lastReplyId = "";
  /** Failed attempts since the last `ready`: the exponent of the backoff. */
  private attempt = 0;
  private unauthorizedInARow = 0;
  private everOnline = false;
  private started = false;
  private stopped = false;
  /** Bumped by every attempt, so a late answer of an abandoned one is ignored. */
  private generation = 0;
  /** Ids sent on this socket and not acknowledged yet, oldest first: the server answers
   *  messages in order, so an error about a message is about the oldest of them. */
  private awaiting: string[] = [];
  private retryTimer: unknown = null;
  private deadTimer: unknown = null;
  private typingTimer: unknown = null;

  constructor(options: ChatClientOptions) {
    this.options = options;
    this.timers = options.timers ?? browserTimers;
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.fetchSession = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
    this.createSocket = options.createSocket ?? ((url) => new WebSocket(url));
    this.random = options.random ?? Math.random;
    this.newId = options.newId ?? newMessageId;
    this.key = storageKey(options.origin, options.connector);
    this.token = this.read("token") ?? "";
    const saved = this.loadTranscript();
    this.lastReplyId = saved.lastReplyId;
    this.snapshot = {
      state: { kind: "connecting", retry: false },
      entries: saved.entries,
      typing: false,
      error: "",
      title: "",
    };
  }

  // --- what the UI uses ---------------------------------------------------------------

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): ChatSnapshot => this.snapshot;

  /** Connect (once); the client then keeps itself connected until stop(). */
  start(): void {
    if (this.started) return;
    this.started = true;
    void this.open();
  }

  /** Close for good (the page or widget goes away). */
  stop(): void {
    this.stopped = true;
    this.generation += 1;
    this.clearTimer("retryTimer");
    this.clearTimer("deadTimer");
    this.clearTimer("typingTimer");
    const socket = this.socket;
    this.socket = null;
    if (socket) this.closeQuietly(socket, 1000);
    this.update({ state: { kind: "offline", reason: "stopped" }, typing: false });
  }

  /** Skip the wait of a scheduled reconnect ("Retry now", the browser coming back online). */
  retryNow(): void {
    if (this.stopped || !this.started || this.snapshot.state.kind !== "reconnecting") return;
    this.clearTimer("retryTimer");
    void this.open();
  }

  /** Queue a message; it goes out now if online, else after the next `ready`. Returns its
   *  id, or null for an empty or too long text. */
  send(input: string): string | null {
    const body = input.trim();
    if (!body || body.length > MAX_TEXT || this.snapshot.state.kind === "offline") return null;
    const entry: ChatEntry = { id: this.newId(), role: "user", text: body, status: "sending" };
    this.update({ entries: [...this.snapshot.entries, entry], error: "" });
    this.persist();
    if (this.isReady()) this.transmit(entry);
    else if (this.snapshot.state.kind === "reconnecting") this.retryNow();
    return entry.id;
  }

  // --- connecting ---------------------------------------------------------------------

  private async open(): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    this.update({ state: { kind: "connecting", retry: this.everOnline || this.attempt > 0 } });
    let socketPath: string;
    try {
      socketPath = await this.session();
    } catch (error) {
      if (generation !== this.generation) return;
      if (error instanceof StopError) this.halt(error.reason);
      else this.scheduleRetry();
      return;
    }
    if (generation !== this.generation || this.stopped) return;
    const url = socketUrl(`${socketPath}?token=${encodeURIComponent(this.token)}`, this.options.origin);
    let socket: SocketLike;
    try {
      socket = this.createSocket(url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    this.awaiting = [];
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.alive();
      this.receive(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.closed(event.code);
    };
    socket.onerror = () => undefined; // a close event follows
    this.alive(); // also bounds how long opening may take
  }

  /** POST the session endpoint: a (renewed) visitor token and the socket's path. */
  private async session(): Promise<string> {
    const url = new URL(this.options.sessionUrl, this.options.origin).toString();
    const response = await this.fetchSession(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: this.token }),
      credentials: "same-origin",
      mode: "cors",
    });
    if (response.status === 404) throw new StopError("not_found");
    if (response.status === 403) throw new StopError("forbidden");
    if (!response.ok) {
      // 400: the stored token is unusable; start afresh next time.
      if (response.status === 400) this.forgetToken();
      throw new Error(`session: HTTP ${response.status}`);
    }
    const body = (await response.json()) as Record<string, unknown> | null;
    const token = text(body?.token);
    const socket = text(body?.socket);
    if (!token || !socket) throw new Error("session: malformed answer");
    this.token = token;
    this.write("token", token);
    return socket;
  }

  private closed(code: number): void {
    this.clearTimer("deadTimer");
    this.clearTimer("typingTimer");
    this.awaiting = [];
    if (this.snapshot.typing) this.update({ typing: false });
    if (this.stopped) return;
    if (code === CLOSE_NOT_FOUND) return this.halt("not_found");
    if (code === CLOSE_FORBIDDEN) return this.halt("forbidden");
    if (code === CLOSE_UNAUTHORIZED) {
      // The token no longer verifies (the connector's signing key changed): get a new one
      // at once; a second refusal in a row waits like any failure.
      this.forgetToken();
      this.unauthorizedInARow += 1;
      if (this.unauthorizedInARow === 1) {
        void this.open();
        return;
      }
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    const initial = this.options.initialBackoffMs ?? 1000;
    const max = this.options.maxBackoffMs ?? 30_000;
    const jitter = this.options.jitter ?? 0.2;
    const nominal = Math.min(max, initial * 2 ** Math.min(this.attempt, 30));
    // Taken off, never added: the longest wait stays the documented 30 s; random spreads the
    // reconnects of many widgets after a server restart.
    const delayMs = Math.round(nominal * (1 - jitter * this.random()));
    this.attempt += 1;
    const retryAt = this.timers.now() + delayMs;
    this.clearTimer("retryTimer");
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      void this.open();
    }, delayMs);
    this.update({ state: { kind: "reconnecting", retryAt, delayMs, attempt: this.attempt } });
  }

  private halt(reason: OfflineReason): void {
    this.stopped = true;
    this.clearTimer("retryTimer");
    this.clearTimer("deadTimer");
    this.update({ state: { kind: "offline", reason }, typing: false });
  }

  /** Anything from the server proves the socket alive; silence past the limit means a dead
   *  connection (a NAT or proxy dropped it without a close), which only a new one fixes. */
  private alive(): void {
    this.clearTimer("deadTimer");
    this.deadTimer = this.timers.setTimeout(() => {
      this.deadTimer = null;
      const socket = this.socket;
      if (!socket) return;
      this.socket = null;
      this.closeQuietly(socket, 4000);
      this.closed(1006);
    }, this.options.deadAfterMs ?? 75_000);
  }

  private isReady(): boolean {
    return this.socket !== null && this.socket.readyState === OPEN && this.snapshot.state.kind === "online";
  }

  private transmit(entry: ChatEntry): void {
    if (!this.socket) return;
    this.awaiting.push(entry.id);
    this.socket.send(JSON.stringify({ type: "message", id: entry.id, text: entry.text }));
  }

  private sendJson(message: Record<string, unknown>): void {
    this.socket?.send(JSON.stringify(message));
  }

  // --- what the server says -------------------------------------------------------------

  private receive(data: unknown): void {
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(String(data));
      if (!parsed || typeof parsed !== "object") return;
      message = parsed as Record<string, unknown>;
    } catch {
      return;
    }
    switch (message.type) {
      case "ready":
        return this.ready(text(message.title));
      case "ping":
        return this.sendJson({ type: "pong" });
      case "ack":
        return this.acknowledged(text(message.id));
      case "typing":
        return this.typing();
      case "stream":
        return this.reply(text(message.id), text(message.text), text(message.reply_to), false);
      case "message":
        return this.reply(text(message.id), text(message.text), text(message.reply_to), true);
      case "error":
        return this.refused(text(message.field), text(message.detail));
      default:
        return;
    }
  }

  private ready(title: string): void {
    const resume = this.everOnline || this.snapshot.entries.length > 0;
    this.attempt = 0;
    this.unauthorizedInARow = 0;
    this.everOnline = true;
    this.update({ state: { kind: "online" }, title: title || this.snapshot.title });
    // The replies sent while away first, then what was not acknowledged, with the same ids
    // (the server acknowledges a repeat as a duplicate and answers it once).
    if (resume) this.sendJson({ type: "resume", after: this.lastReplyId });
    for (const entry of this.snapshot.entries) {
      if (entry.role === "user" && entry.status === "sending") this.transmit(entry);
    }
  }

  private acknowledged(id: string): void {
    this.awaiting = this.awaiting.filter((waiting) => waiting !== id);
    this.setUserStatus(id, "sent");
  }

  private refused(field: string, detail: string): void {
    if ((field === "id" || field === "text") && this.awaiting.length > 0) {
      const id = this.awaiting.shift() as string;
      this.setUserStatus(id, "failed");
    }
    this.update({ error: detail || field });
  }

  private typing(): void {
    this.clearTimer("typingTimer");
    this.typingTimer = this.timers.setTimeout(() => {
      this.typingTimer = null;
      this.update({ typing: false });
    }, this.options.typingMs ?? 30_000);
    if (!this.snapshot.typing) this.update({ typing: true });
  }

  private reply(id: string, body: string, replyTo: string, final: boolean): void {
    if (!id) return;
    const entries = this.snapshot.entries;
    const index = entries.findIndex((entry) => entry.role === "assistant" && entry.id === id);
    const existing = index >= 0 ? entries[index] : null;
    // A reply already complete: a resume overlapping what was shown, or a late stream update.
    if (existing?.status === "final") return;
    this.clearTimer("typingTimer");
    const entry: ChatEntry = {
      id,
      role: "assistant",
      text: body,
      status: final ? "final" : "streaming",
      replyTo: replyTo || existing?.replyTo,
    };
    let next: ChatEntry[];
    if (existing) {
      next = [...entries];
      next[index] = entry;
    } else {
      next = insertReply(entries, entry);
    }
    if (replyTo) {
      // A reply proves its question arrived, even if the ack was lost with the socket.
      next = next.map((item) =>
        item.role === "user" && item.id === replyTo && item.status === "sending"
          ? { ...item, status: "sent" }
          : item,
      );
    }
    this.update({ entries: next, typing: false });
    if (final) {
      this.lastReplyId = id;
      this.persist();
    }
  }

  private setUserStatus(id: string, status: EntryStatus): void {
    const entries = this.snapshot.entries;
    const index = entries.findIndex((entry) => entry.role === "user" && entry.id === id);
    if (index < 0 || entries[index].status === status || entries[index].status === "failed") return;
    const next = [...entries];
    next[index] = { ...entries[index], status };
    this.update({ entries: next });
    this.persist();
  }

  // --- plumbing -------------------------------------------------------------------------

  private update(change: Partial<ChatSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    for (const listener of [...this.listeners]) listener();
  }

  private clearTimer(name: "retryTimer" | "deadTimer" | "typingTimer"): void {
    if (this[name] !== null) {
      this.timers.clearTimeout(this[name]);
      this[name] = null;
    }
  }

  private closeQuietly(socket: SocketLike, code: number): void {
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(code);
    } catch {
      // already closed
    }
  }

  private forgetToken(): void {
    this.token = "";
    this.remove("token");
  }

  private read(name: string): string | null {
    try {
      return this.storage?.getItem(`${this.key}:${name}`) ?? null;
    } catch {
      return null;
    }
  }

  private write(name: string, value: string): void {
    try {
      this.storage?.setItem(`${this.key}:${name}`, value);
    } catch {
      // Full or blocked storage: the chat works, it just forgets on reload.
    }
  }

  private remove(name: string): void {
    try {
      this.storage?.removeItem(`${this.key}:${name}`);
    } catch {
      // as above
    }
  }

  private persist(): void {
    const entries = this.snapshot.entries.slice(-KEPT_ENTRIES);
    this.write("transcript", JSON.stringify({ entries, lastReplyId: this.lastReplyId }));
  }

  private loadTranscript(): { entries: ChatEntry[]; lastReplyId: string } {
    const raw = this.read("transcript");
    if (!raw) return { entries: [], lastReplyId: "" };
    try {
      const data = JSON.parse(raw) as { entries?: unknown; lastReplyId?: unknown };
      const entries = Array.isArray(data.entries) ? data.entries.filter(isEntry) : [];
      return { entries, lastReplyId: text(data.lastReplyId) };
    } catch {
      return { entries: [], lastReplyId: "" };
    }
  }
}

/** A new reply goes after its question and the replies to it already shown, so a reply
 *  that arrives after a reconnect does not land below messages typed later. */
export function insertReply(entries: readonly ChatEntry[], reply: ChatEntry): ChatEntry[] {
  const question = reply.replyTo
    ? entries.findIndex((entry) => entry.role === "user" && entry.id === reply.replyTo)
    : -1;
  if (question < 0) return [...entries, reply];
  let at = question + 1;
  while (at < entries.length && entries[at].role === "assistant" && entries[at].replyTo === reply.replyTo) {
    at += 1;
  }
  return [...entries.slice(0, at), reply, ...entries.slice(at)];
}
