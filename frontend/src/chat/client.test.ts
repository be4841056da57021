import { beforeEach, describe, expect, it } from "vitest";
import {
  ChatClient,
  insertReply,
  newMessageId,
  storageKey,
  type ChatClientOptions,
  type ChatEntry,
  type KeyValueStore,
  type SessionFetch,
  type SocketLike,
  type Timers,
} from "./client";

// --- doubles ----------------------------------------------------------------------------

class FakeTimers implements Timers {
  private clock = 1_000_000;
  private nextHandle = 1;
  private pending = new Map<number, { at: number; ms: number; callback: () => void }>();

  setTimeout(callback: () => void, ms: number): unknown {
    const handle = this.nextHandle++;
    this.pending.set(handle, { at: this.clock + ms, ms, callback });
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  now(): number {
    return this.clock;
  }

  /** Delays of the timers still pending. */
  delays(): number[] {
    return [...this.pending.values()].map((timer) => timer.ms);
  }

  /** Move the clock, running due timers in order (and the promises they start). */
  async advance(ms: number): Promise<void> {
    const until = this.clock + ms;
    for (;;) {
      const due = [...this.pending.entries()]
        .filter(([, timer]) => timer.at <= until)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.clock = due[1].at;
      due[1].callback();
      await flush();
    }
    this.clock = until;
    await flush();
  }
}

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  closedWith: number | undefined;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  // What the server does:
  accept(title = "Assistant"): void {
    this.readyState = 1;
    this.onopen?.(new Event("open"));
    this.push({ type: "ready", visitor: "v-1", title });
  }

  push(message: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(message) } as MessageEvent);
  }

  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" } as CloseEvent);
  }

  ofType(type: string): Record<string, unknown>[] {
    return this.sent.filter((message) => message.type === type);
  }
}

class MemoryStore implements KeyValueStore {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

interface Harness {
  client: ChatClient;
  timers: FakeTimers;
  sockets: FakeSocket[];
  sessions: { token: string }[];
  store: MemoryStore;
  /** The answer of the next session POSTs: a status, or a thrown network error. */
  sessionAnswer: { status: number } | "network";
  last(): FakeSocket;
}

function harness(options: Partial<ChatClientOptions> = {}, store = new MemoryStore()): Harness {
  const timers = new FakeTimers();
  const sockets: FakeSocket[] = [];
  const sessions: { token: string }[] = [];
  let ids = 0;
  const h: Harness = {
    client: null as unknown as ChatClient,
    timers,
    sockets,
    sessions,
    store,
    sessionAnswer: { status: 200 },
    last: () => sockets[sockets.length - 1],
  };
  const fetch: SessionFetch = async (_url, init) => {
    sessions.push(JSON.parse(String(init.body)) as { token: string });
    if (h.sessionAnswer === "network") throw new TypeError("Failed to fetch");
    const status = h.sessionAnswer.status;
    return {
      ok: status >= 200 && status < 300,
      status,
      json: async () => ({ token: `token-${sessions.length}`, visitor: "v-1", socket: "/ws/webchat/3/" }),
    };
  };
  h.client = new ChatClient({
    connector: 3,
    origin: "https://studio.example",
    sessionUrl: "/connectors/3/webchat/session",
    storage: store,
    fetch,
    createSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    timers,
    random: () => 0,
    newId: () => `m-${++ids}`,
    ...options,
  });
  return h;
}

async function online(h: Harness): Promise<FakeSocket> {
  h.client.start();
  await flush();
  h.last().accept();
  return h.last();
}

const texts = (entries: readonly ChatEntry[]) => entries.map((entry) => `${entry.role}:${entry.text}`);

// --- tests ------------------------------------------------------------------------------

describe("ChatClient connecting", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  it("gets a token, opens the socket on the studio's origin and goes online on ready", async () => {
    h.client.start();
    expect(h.client.getSnapshot().state).toEqual({ kind: "connecting", retry: false });
    await flush();
    expect(h.sessions).toEqual([{ token: "" }]);
    expect(h.last().url).toBe("wss://studio.example/ws/webchat/3/?token=token-1");
    h.last().accept("Shop assistant");
    expect(h.client.getSnapshot().state).toEqual({ kind: "online" });
    expect(h.client.getSnapshot().title).toBe("Shop assistant");
    // A fresh visitor has nothing to resume.
    expect(h.last().ofType("resume")).toEqual([]);
    expect(h.store.getItem(`${storageKey("https://studio.example", 3)}:token`)).toBe("token-1");
  });

  it("keeps the visitor: the stored token is sent to the session endpoint", async () => {
    const store = new MemoryStore();
    store.setItem(`${storageKey("https://studio.example", 3)}:token`, "old-token");
    const again = harness({}, store);
    again.client.start();
    await flush();
    expect(again.sessions).toEqual([{ token: "old-token" }]);
  });

  it("answers pings with pongs", async () => {
    const socket = await online(h);
    socket.push({ type: "ping" });
    expect(socket.ofType("pong")).toHaveLength(1);
  });

  it("backs off 1, 2, 4, 8, 16, 30, 30 seconds while the server stays away", async () => {
    h.client.start();
    await flush();
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      h.last().drop();
      const state = h.client.getSnapshot().state;
      if (state.kind !== "reconnecting") throw new Error(`expected reconnecting, got ${state.kind}`);
      delays.push(state.delayMs);
      expect(state.retryAt).toBe(h.timers.now() + state.delayMs);
      await h.timers.advance(state.delayMs);
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(h.sockets).toHaveLength(8);
  });

  it("counts failed session requests like failed sockets", async () => {
    h.sessionAnswer = "network";
    h.client.start();
    await flush();
    expect(h.client.getSnapshot().state).toMatchObject({ kind: "reconnecting", delayMs: 1000 });
    await h.timers.advance(1000);
    expect(h.client.getSnapshot().state).toMatchObject({ kind: "reconnecting", delayMs: 2000 });
    h.sessionAnswer = { status: 503 };
    await h.timers.advance(2000);
    expect(h.client.getSnapshot().state).toMatchObject({ kind: "reconnecting", delayMs: 4000 });
    expect(h.sockets).toHaveLength(0);
  });

  it("takes jitter off the delay, never adds it", async () => {
    const jittery = harness({ random: () => 0.999 });
    jittery.client.start();
    await flush();
    jittery.last().drop();
    const state = jittery.client.getSnapshot().state;
    expect(state.kind === "reconnecting" && state.delayMs).toBe(800);
  });

  it("starts the backoff over after a successful ready", async () => {
    h.client.start();
    await flush();
    h.last().drop();
    await h.timers.advance(1000);
    h.last().drop();
    await h.timers.advance(2000);
    h.last().accept();
    h.last().drop();
    expect(h.client.getSnapshot().state).toMatchObject({ kind: "reconnecting", delayMs: 1000 });
  });

  it("retries at once when asked, and when a message is sent while waiting", async () => {
    const socket = await online(h);
    socket.drop();
    expect(h.timers.delays()).toContain(1000);
    h.client.retryNow();
    await flush();
    expect(h.sockets).toHaveLength(2);
    h.last().drop();
    expect(h.client.getSnapshot().state).toMatchObject({ kind: "reconnecting", delayMs: 2000 });
    h.client.send("hello?");
    await flush();
    expect(h.sockets).toHaveLength(3);
  });

  it("treats a silent socket as dead after 75 s and reconnects", async () => {
    const socket = await online(h);
    await h.timers.advance(60_000);
    socket.push({ type: "ping" }); // the server's heartbeat keeps it alive
    await h.timers.advance(74_000);
    expect(h.client.getSnapshot().state).toEqual({ kind: "online" });
    await h.timers.advance(1_000);
    expect(socket.closedWith).toBe(4000);
    expect(h.client.getSnapshot().state).toMatchObject({ kind: "reconnecting", delayMs: 1000 });
    await h.timers.advance(1000);
    expect(h.sockets).toHaveLength(2);
  });

  it("gets a fresh token after 4401 and connects again at once", async () => {
    const socket = await online(h);
    socket.drop(4401);
    await flush();
    expect(h.sessions.map((session) => session.token)).toEqual(["", ""]);
    expect(h.last().url).toContain("token=token-2");
    // A second refusal in a row waits like any failure instead of looping.
    h.last().drop(4401);
    expect(h.client.getSnapshot().state).toMatchObject({ kind: "reconnecting", delayMs: 1000 });
  });

  it("stops retrying for an unknown or disabled connector (4404) and says so", async () => {
    const socket = await online(h);
    socket.drop(4404);
    expect(h.client.getSnapshot().state).toEqual({ kind: "offline", reason: "not_found" });
    await h.timers.advance(120_000);
    expect(h.sockets).toHaveLength(1);
    expect(h.timers.delays()).toEqual([]);
    expect(h.client.send("anyone?")).toBeNull();
  });

  it("stops when the session endpoint refuses: 404 unknown, 403 another site", async () => {
    h.sessionAnswer = { status: 404 };
    h.client.start();
    await flush();
    expect(h.client.getSnapshot().state).toEqual({ kind: "offline", reason: "not_found" });
    const foreign = harness();
    foreign.sessionAnswer = { status: 403 };
    foreign.client.start();
    await flush();
    expect(foreign.client.getSnapshot().state).toEqual({ kind: "offline", reason: "forbidden" });
    const embedded = harness();
    const socket = await online(embedded);
    socket.drop(4403);
    expect(embedded.client.getSnapshot().state).toEqual({ kind: "offline", reason: "forbidden" });
  });

  it("closes and stays closed after stop()", async () => {
    const socket = await online(h);
    h.client.stop();
    expect(socket.closedWith).toBe(1000);
    expect(h.client.getSnapshot().state).toEqual({ kind: "offline", reason: "stopped" });
    await h.timers.advance(100_000);
    expect(h.sockets).toHaveLength(1);
  });
});

describe("ChatClient messages", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  it("sends a message with a client id and marks it sent on ack", async () => {
    const socket = await online(h);
    const id = h.client.send("  你好  ");
    expect(id).toBe("m-1");
    expect(socket.ofType("message")).toEqual([{ type: "message", id: "m-1", text: "你好" }]);
    expect(h.client.getSnapshot().entries).toEqual([
      { id: "m-1", role: "user", text: "你好", status: "sending" },
    ]);
    socket.push({ type: "ack", id: "m-1", duplicate: false });
    expect(h.client.getSnapshot().entries[0].status).toBe("sent");
  });

  it("refuses empty and too long texts", async () => {
    await online(h);
    expect(h.client.send("   ")).toBeNull();
    expect(h.client.send("x".repeat(20_001))).toBeNull();
    expect(h.client.getSnapshot().entries).toEqual([]);
  });

  it("shows the stream growing, then the final message replaces it", async () => {
    const socket = await online(h);
    h.client.send("poem");
    socket.push({ type: "ack", id: "m-1", duplicate: false });
    socket.push({ type: "typing" });
    expect(h.client.getSnapshot().typing).toBe(true);
    socket.push({ type: "stream", id: "r-1", text: "春眠", reply_to: "m-1" });
    expect(h.client.getSnapshot().typing).toBe(false);
    socket.push({ type: "stream", id: "r-1", text: "春眠不觉晓", reply_to: "m-1" });
    expect(h.client.getSnapshot().entries[1]).toEqual({
      id: "r-1",
      role: "assistant",
      text: "春眠不觉晓",
      status: "streaming",
      replyTo: "m-1",
    });
    socket.push({ type: "message", id: "r-1", text: "春眠不觉晓，处处闻啼鸟。", reply_to: "m-1" });
    const entries = h.client.getSnapshot().entries;
    expect(entries).toHaveLength(2);
    expect(entries[1]).toMatchObject({ text: "春眠不觉晓，处处闻啼鸟。", status: "final" });
    // A stream update arriving late does not undo the final text.
    socket.push({ type: "stream", id: "r-1", text: "春眠", reply_to: "m-1" });
    expect(h.client.getSnapshot().entries[1].text).toBe("春眠不觉晓，处处闻啼鸟。");
  });

  it("ignores a reply it has shown before", async () => {
    const socket = await online(h);
    h.client.send("hi");
    socket.push({ type: "message", id: "r-1", text: "hello", reply_to: "m-1" });
    socket.push({ type: "message", id: "r-1", text: "hello", reply_to: "m-1" });
    expect(texts(h.client.getSnapshot().entries)).toEqual(["user:hi", "assistant:hello"]);
  });

  it("clears the typing signal after a quiet while", async () => {
    const socket = await online(h);
    socket.push({ type: "typing" });
    await h.timers.advance(30_000);
    expect(h.client.getSnapshot().typing).toBe(false);
  });

  it("marks the oldest unacknowledged message failed when the server refuses it", async () => {
    const socket = await online(h);
    h.client.send("first");
    h.client.send("second");
    socket.push({ type: "error", field: "text", detail: "the text must have 1 to 20000 characters" });
    socket.push({ type: "ack", id: "m-2", duplicate: false });
    const snapshot = h.client.getSnapshot();
    expect(snapshot.entries.map((entry) => entry.status)).toEqual(["failed", "sent"]);
    expect(snapshot.error).toBe("the text must have 1 to 20000 characters");
  });

  it("queues messages typed while offline and sends them after ready", async () => {
    h.client.start();
    await flush();
    h.client.send("typed before the socket was ready");
    expect(h.last().sent).toEqual([]);
    h.last().accept();
    expect(h.last().ofType("message")).toEqual([
      { type: "message", id: "m-1", text: "typed before the socket was ready" },
    ]);
  });
});

describe("ChatClient after a drop", () => {
  let h: Harness;
  beforeEach(() => {
    h = harness();
  });

  it("resumes after the last reply shown and resends unacknowledged messages with their ids", async () => {
    const socket = await online(h);
    h.client.send("one");
    socket.push({ type: "ack", id: "m-1", duplicate: false });
    socket.push({ type: "message", id: "r-1", text: "answer one", reply_to: "m-1" });
    h.client.send("two"); // sent, never acknowledged: the socket dies first
    socket.drop();
    h.client.send("three"); // typed while offline (this also retries at once)
    await flush();
    const again = h.last();
    expect(again).not.toBe(socket);
    expect(h.client.getSnapshot().state.kind).toBe("connecting");
    again.accept();
    expect(again.sent).toEqual([
      { type: "resume", after: "r-1" },
      { type: "message", id: "m-2", text: "two" },
      { type: "message", id: "m-3", text: "three" },
    ]);
    // The server stored "two" before the drop: a duplicate, answered once.
    again.push({ type: "ack", id: "m-2", duplicate: true });
    again.push({ type: "ack", id: "m-3", duplicate: false });
    // The resume overlaps what was shown (r-1) and brings what came while away (r-2).
    again.push({ type: "message", id: "r-1", text: "answer one", reply_to: "m-1" });
    again.push({ type: "message", id: "r-2", text: "answer two", reply_to: "m-2" });
    again.push({ type: "message", id: "r-3", text: "answer three", reply_to: "m-3" });
    expect(texts(h.client.getSnapshot().entries)).toEqual([
      "user:one",
      "assistant:answer one",
      "user:two",
      "assistant:answer two",
      "user:three",
      "assistant:answer three",
    ]);
    expect(h.client.getSnapshot().entries.every((entry) => entry.status !== "sending")).toBe(true);
    // The next drop resumes after the newest reply.
    again.drop();
    await h.timers.advance(1000);
    h.last().accept();
    expect(h.last().ofType("resume")).toEqual([{ type: "resume", after: "r-3" }]);
    expect(h.last().ofType("message")).toEqual([]);
  });

  it("finishes a stream cut by the drop with the final message from resume", async () => {
    const socket = await online(h);
    h.client.send("long question");
    socket.push({ type: "ack", id: "m-1", duplicate: false });
    socket.push({ type: "stream", id: "r-1", text: "partial", reply_to: "m-1" });
    socket.drop();
    await h.timers.advance(1000);
    h.last().accept();
    expect(h.last().ofType("resume")).toEqual([{ type: "resume", after: "" }]);
    h.last().push({ type: "message", id: "r-1", text: "partial and the rest", reply_to: "m-1" });
    expect(texts(h.client.getSnapshot().entries)).toEqual([
      "user:long question",
      "assistant:partial and the rest",
    ]);
  });

  it("counts a reply to an unacknowledged message as its acknowledgement", async () => {
    const socket = await online(h);
    h.client.send("q");
    socket.push({ type: "message", id: "r-1", text: "a", reply_to: "m-1" });
    expect(h.client.getSnapshot().entries[0].status).toBe("sent");
  });

  it("keeps the conversation across page loads and resumes where it stopped", async () => {
    const socket = await online(h);
    h.client.send("before reload");
    socket.push({ type: "ack", id: "m-1", duplicate: false });
    socket.push({ type: "message", id: "r-1", text: "kept", reply_to: "m-1" });
    h.client.send("unanswered");
    h.client.stop();

    const reloaded = harness({ newId: () => "m-new" }, h.store);
    expect(texts(reloaded.client.getSnapshot().entries)).toEqual([
      "user:before reload",
      "assistant:kept",
      "user:unanswered",
    ]);
    const next = await online(reloaded);
    expect(reloaded.sessions).toEqual([{ token: "token-1" }]);
    expect(next.sent).toEqual([
      { type: "resume", after: "r-1" },
      { type: "message", id: "m-2", text: "unanswered" },
    ]);
  });

  it("survives corrupt storage", () => {
    const store = new MemoryStore();
    store.setItem(`${storageKey("https://studio.example", 3)}:transcript`, "{not json");
    expect(harness({}, store).client.getSnapshot().entries).toEqual([]);
    store.setItem(
      `${storageKey("https://studio.example", 3)}:transcript`,
      JSON.stringify({ entries: [{ id: 5 }, { id: "a", role: "user", text: "ok", status: "sent" }] }),
    );
    expect(texts(harness({}, store).client.getSnapshot().entries)).toEqual(["user:ok"]);
  });
});

describe("helpers", () => {
  it("places a late reply right after its question and earlier replies to it", () => {
    const entries: ChatEntry[] = [
      { id: "m-1", role: "user", text: "one", status: "sent" },
      { id: "r-0", role: "assistant", text: "first part", status: "final", replyTo: "m-1" },
      { id: "m-2", role: "user", text: "two", status: "sending" },
    ];
    const reply: ChatEntry = { id: "r-1", role: "assistant", text: "second part", status: "final", replyTo: "m-1" };
    expect(insertReply(entries, reply).map((entry) => entry.id)).toEqual(["m-1", "r-0", "r-1", "m-2"]);
    const orphan: ChatEntry = { ...reply, id: "r-9", replyTo: "unknown" };
    expect(insertReply(entries, orphan).map((entry) => entry.id)).toEqual(["m-1", "r-0", "m-2", "r-9"]);
  });

  it("makes UUIDs with or without crypto.randomUUID", () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    expect(newMessageId()).toMatch(uuid);
    const original = globalThis.crypto.randomUUID;
    try {
      Object.defineProperty(globalThis.crypto, "randomUUID", { value: undefined, configurable: true });
      const first = newMessageId();
      expect(first).toMatch(uuid);
      expect(newMessageId()).not.toBe(first);
    } finally {
      Object.defineProperty(globalThis.crypto, "randomUUID", { value: original, configurable: true });
    }
  });
});
