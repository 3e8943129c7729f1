// A fetch-based client for the PIVOT API (Node 20+ and browsers).
//
//   const client = new PIVOTClient("http://localhost:8000");   // or PIVOT_URL
//   const session = await client.createSession({ config_path: "configs/train.yaml" });
//   await client.startTraining(session.session_id);
//   client.streamMetrics(session.session_id, (m) => console.log(m.epoch, m.val_loss));
import {
  APIConnectionError,
  APIStatusError,
  NotFoundError,
  PIVOTError,
  errorFromBody,
} from "./errors.js";
import type {
  Alert,
  AlertRule,
  AlertRuleList,
  AlertRuleRequest,
  AlertRuleUpdate,
  CheckpointList,
  ConfigList,
  CreateSessionRequest,
  CreatedSession,
  Health,
  LiveMessage,
  LiveMetricsMessage,
  Message,
  MetricHistory,
  Metrics,
  Notification,
  NotificationList,
  Resources,
  Session,
  SessionList,
  SessionEventList,
  SessionGpuHistory,
  SessionMetrics,
  SessionsEvent,
  SessionSummary,
  StartedSession,
  StepHistory,
  StoppedSession,
  TrainingEvent,
  UploadedCheckpoint,
  CreateWebhookRequest,
  Webhook,
  WebhookCreated,
  WebhookDeadLetter,
  WebhookDeadLetterList,
  WebhookDeliveryList,
  WebhookList,
  WebhookRedelivered,
  WebhookTestResult,
  WhoAmI,
  DeployModelRequest,
  ModelDeleted,
  ModelDetail,
  ModelList,
  PredictResponse,
  UpdateModelRequest,
} from "./types.js";

export interface ClientOptions {
  /** API URL, with or without `/api/v1` (default: PIVOT_URL, then http://localhost:8000). */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer …` (default: PIVOT_API_KEY). */
  apiKey?: string;
  /** Retries for 429/503 and connection failures (default 2). */
  maxRetries?: number;
  /** Per-request timeout in ms (default 30000). */
  timeoutMs?: number;
}

export interface StreamOptions {
  /** Every live message (status, checkpoint, metrics) as the server sent it. */
  onEvent?: (message: LiveMessage) => void;
  /** The stream failed for good; without it the error is logged. */
  onError?: (error: Error) => void;
  /** Resume after this event id (a message's `id`). */
  since?: string;
  /** Reconnects in a row without a message before giving up (default 5). */
  maxReconnects?: number;
}

export interface MetricStream {
  /** Stop listening and close the connection. */
  close(): void;
  /** Settles when the session has ended (or the stream failed, or close() was called). */
  readonly done: Promise<void>;
  /** The last event id received: pass it as `since` to resume. */
  readonly lastEventId: string | undefined;
}

/** The state of a live stream, for a "connection lost" banner. */
export type LiveState = "connecting" | "open" | "reconnecting" | "closed";

export interface LiveOptions {
  /** Resume after this event id (sent as Last-Event-ID). */
  lastEventId?: string;
  /** Every change of the connection's state. */
  onState?: (state: LiveState) => void;
  /** The stream failed for good (401, 403, 404…); without it the error is logged. */
  onError?: (error: Error) => void;
  /**
   * No byte for this long (the server sends a heartbeat every 15 s) counts as a dead
   * connection: it is dropped and resumed (default 45000).
   */
  idleTimeoutMs?: number;
}

export interface EventStreamOptions extends LiveOptions {
  query?: Query;
  /** Every event as it arrives. */
  onMessage: (message: SSEMessage) => void;
  /** True for an event after which the server ends the stream for good (no reconnect). */
  isFinal?: (message: SSEMessage) => boolean;
}

/** A Server-Sent Events stream that reconnects with Last-Event-ID until closed. */
export interface EventStream {
  close(): void;
  /** Settles when the stream ended (final event, close()), rejects when it failed for good. */
  readonly done: Promise<void>;
  readonly lastEventId: string | undefined;
}

export interface LogOptions {
  /** The last N lines only. */
  tail?: number;
  /** A gang's rank (default 0), or "all" (each line then starts with `[rank N] `). */
  rank?: number | "all";
}

type Query = Record<string, string | number | boolean | undefined | null>;

interface RequestOptions {
  query?: Query;
  json?: unknown;
  form?: FormData;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** null: no timeout (streams). */
  timeoutMs?: number | null;
  /** Overrides the client's maxRetries. */
  maxRetries?: number;
}

const API_PREFIX = "/api/v1";
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);
const FINAL = new Set(["completed", "failed", "stopped"]);

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name] || undefined;
}

function apiUrl(base: string | undefined): string {
  let url = (base ?? env("PIVOT_URL") ?? "http://localhost:8000").trim().replace(/\/+$/, "");
  if (!url.endsWith(API_PREFIX)) url += API_PREFIX;
  return url;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// Node-only modules, imported by a name bundlers do not follow: a browser build carries none
// of them (nor `ws`), and nothing here touches them unless a Node-only method is called.
const nodeModule = <T>(name: string): Promise<T> => import(/* @vite-ignore */ name) as Promise<T>;

/** One Server-Sent Event: `event` defaults to "message"; `id` is the stream's last event id. */
export interface SSEMessage {
  event: string;
  data: string;
  id?: string;
}

/**
 * Parses a text/event-stream incrementally, by the WHATWG rules: LF, CR or CRLF line ends
 * (also split across chunks), comments, `id` (kept across events), `retry`. Unlike
 * EventSource it also dispatches a named event with no `data` line.
 */
export class SSEParser {
  /** The last `retry:` the server asked for, in ms. */
  retryMs: number | undefined;
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private lastId: string | undefined;

  feed(chunk: string): SSEMessage[] {
    const out: SSEMessage[] = [];
    const buf = this.buffer + chunk;
    let start = 0;
    for (let i = start; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (c === 13 && i === buf.length - 1) break;
      this.line(buf.slice(start, i), out);
      if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.buffer = buf.slice(start);
    return out;
  }

  private line(line: string, out: SSEMessage[]): void {
    if (line === "") {
      if (this.data.length > 0 || this.event) {
        const message: SSEMessage = { event: this.event || "message", data: this.data.join("\n") };
        if (this.lastId !== undefined) message.id = this.lastId;
        out.push(message);
      }
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return; // a comment: the heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
  }
}

/** Splits a text stream into lines (LF or CRLF), whatever the chunk boundaries. */
export class LineSplitter {
  private rest = "";

  feed(chunk: string): string[] {
    const parts = (this.rest + chunk).split("\n");
    this.rest = parts.pop() ?? "";
    return parts.map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line));
  }

  /** The last line, if the stream did not end with a newline. */
  flush(): string[] {
    const rest = this.rest;
    this.rest = "";
    return rest ? [rest.endsWith("\r") ? rest.slice(0, -1) : rest] : [];
  }
}

function parseData(message: SSEMessage): Record<string, unknown> {
  if (!message.data) return {};
  const data = JSON.parse(message.data) as unknown;
  return data && typeof data === "object" ? (data as Record<string, unknown>) : {};
}

function abortable(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

/** Seconds from `retry-after-ms` / `Retry-After` (seconds or HTTP date), or undefined. */
export function retryAfterMs(headers: Headers): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && !Number.isNaN(Number(ms))) return Math.max(0, Number(ms));
  const raw = headers.get("retry-after");
  if (raw === null) return undefined;
  if (!Number.isNaN(Number(raw))) return Math.max(0, Number(raw) * 1000);
  const date = Date.parse(raw);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function backoffMs(attempt: number): number {
  return Math.min(8000, 500 * 2 ** attempt) * (1 - 0.25 * Math.random());
}

/** A refused connection never reached the server: safe to repeat even a POST. */
function neverSent(error: unknown): boolean {
  const code = (error as { cause?: { code?: string } })?.cause?.code;
  return code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN";
}

function streamKey(id: unknown): [number, number] | undefined {
  if (typeof id !== "string" || !id) return undefined;
  const [ms, seq] = id.split("-");
  const a = Number(ms);
  const b = Number(seq ?? 0);
  return Number.isFinite(a) && Number.isFinite(b) ? [a, b] : undefined;
}

function after(a: [number, number], b: [number, number]): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

type TrainingEventData<K extends TrainingEvent["type"]> = Extract<TrainingEvent, { type: K }>["data"];

type WebSocketLike = {
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  close(code?: number): void;
};
type WebSocketCtor = new (url: string, options?: unknown) => WebSocketLike;

// Browsers and Node 22+ have a global WebSocket; Node 20 gets it from the `ws` package.
async function webSocketClass(): Promise<{ ctor: WebSocketCtor; headers: boolean }> {
  const global = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
  if (global) return { ctor: global, headers: false };
  const mod = await nodeModule<{ WebSocket: WebSocketCtor }>("ws");
  return { ctor: mod.WebSocket, headers: true };
}

export class PIVOTClient {
  readonly baseUrl: string;
  readonly apiKey: string | undefined;
  readonly maxRetries: number;
  readonly timeoutMs: number;

  constructor(baseUrl?: string | ClientOptions, options: ClientOptions = {}) {
    const opts = typeof baseUrl === "object" ? baseUrl : { ...options, baseUrl };
    this.baseUrl = apiUrl(opts.baseUrl);
    this.apiKey = opts.apiKey ?? env("PIVOT_API_KEY");
    this.maxRetries = opts.maxRetries ?? 2;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  // -- plumbing ------------------------------------------------------------------------------

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { Accept: "application/json", ...extra };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    return headers;
  }

  private url(path: string, query: Query = {}): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  /** The raw response of a successful request, after bounded retries. */
  async fetchRaw(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const idempotent = IDEMPOTENT.has(method);
    const maxRetries = options.maxRetries ?? this.maxRetries;
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : options.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const signals = [options.signal, timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs)];
      const present = signals.filter((s): s is AbortSignal => s !== undefined);
      const init: RequestInit = {
        method,
        headers: this.headers({
          ...(options.json !== undefined ? { "Content-Type": "application/json" } : {}),
          ...options.headers,
        }),
        body: options.form ?? (options.json !== undefined ? JSON.stringify(options.json) : undefined),
        signal: present.length > 1 ? AbortSignal.any(present) : present[0],
        redirect: "follow",
      };
      let response: Response;
      try {
        response = await fetch(this.url(path, options.query), init);
      } catch (error) {
        // The caller's own abort is not a failure to retry or to report as one.
        if (options.signal?.aborted) throw error;
        if (attempt < maxRetries && (idempotent || neverSent(error))) {
          await sleep(backoffMs(attempt));
          continue;
        }
        const reason = (error as { cause?: Error })?.cause?.message ?? String(error);
        throw new APIConnectionError(`${method} ${path}: ${reason}`);
      }
      if (response.ok) return response;
      if (attempt < maxRetries && idempotent && (response.status === 429 || response.status === 503)) {
        await response.body?.cancel();
        await sleep(retryAfterMs(response.headers) ?? backoffMs(attempt));
        continue;
      }
      const text = await response.text();
      let body: unknown = null;
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
      throw errorFromBody(response.status, body, text);
    }
  }

  private async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.fetchRaw(method, path, options);
    return (await response.json()) as T;
  }

  /**
   * A Server-Sent Events stream read with fetch (so the key goes as a header, never in a URL),
   * resumed with Last-Event-ID after every drop until close() or a final event; 401/403/404
   * end it for good (done rejects).
   */
  eventStream(path: string, options: EventStreamOptions): EventStream {
    let lastEventId = options.lastEventId;
    let controller: AbortController | undefined;
    const stop = new AbortController();
    const idleMs = options.idleTimeoutMs ?? 45_000;
    let retryMs = 1000;
    let state: LiveState | undefined;
    const setState = (next: LiveState) => {
      if (next !== state) options.onState?.((state = next));
    };

    const connectOnce = async (): Promise<{ ended: boolean; progress: boolean }> => {
      const ctl = (controller = new AbortController());
      const onStop = () => ctl.abort();
      stop.signal.addEventListener("abort", onStop);
      let idle: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => ctl.abort(), idleMs);
      };
      let progress = false;
      try {
        arm();
        const headers: Record<string, string> = { Accept: "text/event-stream" };
        if (lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId;
        const response = await this.fetchRaw("GET", path, {
          query: options.query,
          headers,
          signal: ctl.signal,
          timeoutMs: null,
          maxRetries: 0,
        });
        if (!response.body) return { ended: false, progress };
        setState("open");
        const parser = new SSEParser();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return { ended: false, progress };
          arm();
          progress = true;
          for (const message of parser.feed(value)) {
            if (message.id !== undefined) lastEventId = message.id;
            options.onMessage(message);
            if (options.isFinal?.(message)) {
              void reader.cancel().catch(() => undefined);
              return { ended: true, progress };
            }
          }
          if (parser.retryMs !== undefined) retryMs = parser.retryMs;
        }
      } catch (error) {
        if (stop.signal.aborted) return { ended: true, progress };
        // Rate limits and an API that is restarting are passing; anything else is an answer.
        if (error instanceof APIStatusError && ![429, 502, 503, 504].includes(error.status)) throw error;
        return { ended: false, progress };
      } finally {
        clearTimeout(idle);
        stop.signal.removeEventListener("abort", onStop);
        ctl.abort();
      }
    };

    const run = async (): Promise<void> => {
      setState("connecting");
      for (let failures = 0; !stop.signal.aborted; ) {
        const { ended, progress } = await connectOnce();
        if (ended || stop.signal.aborted) break;
        setState("reconnecting");
        failures = progress ? 1 : failures + 1;
        await abortable(failures === 1 ? retryMs : Math.max(retryMs, backoffMs(failures - 1)), stop.signal);
      }
      setState("closed");
    };

    const done = run().catch((error: unknown) => {
      setState("closed");
      const err = error instanceof Error ? error : new PIVOTError(String(error));
      if (options.onError) options.onError(err);
      else console.error(`pivot: ${err.message}`);
      throw err;
    });
    done.catch(() => undefined);
    return {
      close() {
        stop.abort();
        controller?.abort();
      },
      done,
      get lastEventId() {
        return lastEventId;
      },
    };
  }

  // -- auth ----------------------------------------------------------------------------------

  /** Who the key is (scope read, write or admin); 401 (AuthenticationError) without one. */
  whoami(): Promise<WhoAmI> {
    return this.request("GET", "/auth/whoami");
  }

  // -- sessions ------------------------------------------------------------------------------

  createSession(body: CreateSessionRequest): Promise<CreatedSession> {
    return this.request("POST", "/training/sessions", { json: body });
  }

  startTraining(sessionId: string): Promise<StartedSession> {
    return this.request("POST", `/training/sessions/${encodeURIComponent(sessionId)}/start`);
  }

  stopTraining(sessionId: string): Promise<StoppedSession> {
    return this.request("POST", `/training/sessions/${encodeURIComponent(sessionId)}/stop`);
  }

  getSession(sessionId: string): Promise<Session> {
    return this.request("GET", `/training/sessions/${encodeURIComponent(sessionId)}`);
  }

  listSessionsPage(options: { status?: string; limit?: number; offset?: number } = {}): Promise<SessionList> {
    return this.request("GET", "/training/sessions", { query: options });
  }

  /**
   * The session list, live (`/sse/sessions`): on a fresh connection every session (newest
   * first) then `ready`; after that each change. A reconnect resumes with Last-Event-ID and
   * gets only the changes since, or `reset` and a whole snapshot again.
   */
  watchSessions(onEvent: (event: SessionsEvent) => void, options: LiveOptions = {}): EventStream {
    return this.eventStream("/sse/sessions", {
      ...options,
      onMessage: (message) => {
        const data = parseData(message);
        const id = message.id;
        if (message.event === "session") onEvent({ type: "session", id, session: data as unknown as Session });
        else if (message.event === "deleted") onEvent({ type: "deleted", id, session_id: String(data.session_id) });
        else if (message.event === "reset") onEvent({ type: "reset", id });
        else if (message.event === "ready") onEvent({ type: "ready", id, count: Number(data.count ?? 0) });
      },
    });
  }

  /** The Kubernetes Events of the session's CR and its pods, oldest first. */
  sessionEvents(sessionId: string): Promise<SessionEventList> {
    return this.request("GET", `/training/sessions/${encodeURIComponent(sessionId)}/events`);
  }

  /** The trainer's log so far (empty before its pod exists). */
  async sessionLogs(sessionId: string, options: LogOptions = {}): Promise<string> {
    const response = await this.fetchRaw("GET", `/training/sessions/${encodeURIComponent(sessionId)}/logs`, {
      query: { tail: options.tail, rank: options.rank, follow: false },
      headers: { Accept: "text/plain" },
    });
    return response.text();
  }

  /**
   * The trainer's log lines as they are written, until its pod ends or `signal` aborts
   * (then the generator just returns). Waits for the pod if there is none yet.
   */
  async *followLogs(sessionId: string, options: LogOptions & { signal?: AbortSignal } = {}): AsyncGenerator<string> {
    let response: Response;
    try {
      response = await this.fetchRaw("GET", `/training/sessions/${encodeURIComponent(sessionId)}/logs`, {
        query: { tail: options.tail, rank: options.rank, follow: true },
        headers: { Accept: "text/plain" },
        signal: options.signal,
        timeoutMs: null,
      });
    } catch (error) {
      if (options.signal?.aborted) return;
      throw error;
    }
    if (!response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const lines = new LineSplitter();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        yield* lines.feed(value);
      }
      yield* lines.flush();
    } catch (error) {
      if (options.signal?.aborted) return;
      throw new APIConnectionError(`logs of ${sessionId}: ${(error as Error).message ?? String(error)}`);
    } finally {
      void reader.cancel().catch(() => undefined);
    }
  }

  /** The YAML files of the server's configs dir, each parsed or with its error. */
  listConfigs(): Promise<ConfigList> {
    return this.request("GET", "/configs");
  }

  /** Every session, newest first, a page at a time: `for await (const s of client.listSessions())`. */
  async *listSessions(options: { status?: string; pageSize?: number } = {}): AsyncGenerator<SessionSummary> {
    const seen = new Set<string>();
    let offset = 0;
    for (;;) {
      const page = await this.listSessionsPage({ status: options.status, limit: options.pageSize ?? 50, offset });
      for (const session of page.sessions) {
        // New sessions shift offset pages: never give one twice.
        if (!seen.has(session.session_id)) {
          seen.add(session.session_id);
          yield session;
        }
      }
      offset += page.sessions.length;
      if (page.sessions.length === 0 || offset >= page.total) return;
    }
  }

  // -- metrics -------------------------------------------------------------------------------

  getMetrics(sessionId: string, options: { metricName?: string; limit?: number } = {}): Promise<SessionMetrics> {
    return this.request("GET", `/training/sessions/${encodeURIComponent(sessionId)}/metrics`, {
      query: { metric_name: options.metricName, limit: options.limit },
    });
  }

  metricHistory(
    sessionId: string,
    options: { metricName?: string; startEpoch?: number; endEpoch?: number; maxPoints?: number } = {},
  ): Promise<MetricHistory> {
    return this.request("GET", `/metrics/${encodeURIComponent(sessionId)}/history`, {
      query: {
        metric_name: options.metricName,
        start_epoch: options.startEpoch,
        end_epoch: options.endEpoch,
        max_points: options.maxPoints,
      },
    });
  }

  /**
   * A step-level metric (default `train_loss`) by global step within [startStep, endStep],
   * reduced to at most `maxPoints` points that keep its shape (for a chart: its pixel width).
   */
  stepHistory(
    sessionId: string,
    options: { metricName?: string; startStep?: number; endStep?: number; maxPoints?: number; signal?: AbortSignal } = {},
  ): Promise<StepHistory> {
    return this.request("GET", `/metrics/${encodeURIComponent(sessionId)}/steps`, {
      query: {
        metric_name: options.metricName,
        start_step: options.startStep,
        end_step: options.endStep,
        max_points: options.maxPoints,
      },
      signal: options.signal,
    });
  }

  /**
   * The session's live SSE stream (`/sse/training/{id}`): every epoch record from the first
   * (or after `lastEventId`), status changes and checkpoints, until its final status.
   */
  watchTraining(sessionId: string, onEvent: (event: TrainingEvent) => void, options: LiveOptions = {}): EventStream {
    return this.eventStream(`/sse/training/${encodeURIComponent(sessionId)}`, {
      ...options,
      onMessage: (message) => {
        const data = parseData(message);
        const id = message.id;
        if (message.event === "metrics") onEvent({ type: "metrics", id, data: data as TrainingEventData<"metrics"> });
        else if (message.event === "status") onEvent({ type: "status", id, data: data as TrainingEventData<"status"> });
        else if (message.event === "checkpoint") onEvent({ type: "checkpoint", id, data });
      },
      isFinal: (message) => message.event === "status" && FINAL.has(String(parseData(message).status)),
    });
  }

  /**
   * Epoch records over the WebSocket as they are written, from the first (or after
   * `options.since`), until the session ends. A dropped connection resumes after the last
   * message: no record is lost or given twice.
   */
  streamMetrics(sessionId: string, onMetrics: (metrics: Metrics) => void, options: StreamOptions = {}): MetricStream {
    let lastEventId = options.since;
    let lastMetrics: [number, number] | undefined;
    let socket: WebSocketLike | undefined;
    let closed = false;
    const maxReconnects = options.maxReconnects ?? 5;
    const path = `/ws/training/${encodeURIComponent(sessionId)}`;
    let progress = false; // a message arrived on the current connection

    const connectOnce = async (): Promise<"ended" | "dropped"> => {
      const { ctor, headers } = await webSocketClass();
      // A browser's WebSocket cannot send headers: the key goes as the query token the API
      // accepts for reads (never for writes).
      const token = !headers && this.apiKey ? this.apiKey : undefined;
      const url = this.url(path, { since: lastEventId, access_token: token }).replace(/^http/, "ws");
      return new Promise((resolve, reject) => {
        let ended = false;
        let failure: Error | undefined;
        const ws = new ctor(url, headers ? { headers: this.headers() } : undefined);
        socket = ws;
        ws.onmessage = (event) => {
          let message: LiveMessage;
          try {
            message = JSON.parse(String(event.data)) as LiveMessage;
          } catch {
            return;
          }
          if (typeof message.id === "string") lastEventId = message.id;
          progress = true;
          if (message.type === "error") {
            const err = (message.error ?? {}) as { code?: string; message?: string; details?: Record<string, unknown> };
            const status = err.code === "NOT_FOUND" ? 404 : 400;
            failure = errorFromBody(status, { error: err }, "");
            return;
          }
          options.onEvent?.(message);
          if (message.type === "metrics") {
            const key = streamKey(message.stream_id);
            if (key && lastMetrics && !after(key, lastMetrics)) return;
            if (key) lastMetrics = key;
            ended = false;
            const metrics = message as unknown as LiveMetricsMessage;
            onMetrics({ ...(metrics.metrics ?? {}), epoch: metrics.epoch, timestamp: metrics.timestamp, loss: metrics.loss });
          } else if (message.type === "status") {
            ended = FINAL.has(String(message.status));
          }
        };
        ws.onerror = () => {
          /* the close event that follows decides */
        };
        ws.onclose = (event) => {
          socket = undefined;
          if (failure) reject(failure);
          else if (event.code === 4404) reject(new NotFoundError(event.reason || "no such session", 404, "NOT_FOUND"));
          // The server closes with 1000 only after the session's final status.
          else if (closed || ended || event.code === 1000) resolve("ended");
          else resolve("dropped");
        };
      });
    };

    const run = async (): Promise<void> => {
      for (let failures = 0; !closed; ) {
        progress = false;
        const outcome = await connectOnce();
        if (outcome === "ended" || closed) return;
        failures = progress ? 1 : failures + 1;
        if (failures > maxReconnects) {
          throw new APIConnectionError(`live stream of ${sessionId} dropped ${failures} times without progress`);
        }
        await sleep(failures === 1 ? 250 : backoffMs(failures - 1));
      }
    };

    const done = run().catch((error: unknown) => {
      const err = error instanceof Error ? error : new PIVOTError(String(error));
      if (options.onError) options.onError(err);
      else console.error(`pivot: ${err.message}`);
      throw err;
    });
    // The caller may ignore `done` (as the reference's example does): errors went to onError.
    done.catch(() => undefined);
    return {
      close() {
        closed = true;
        socket?.close(1000);
      },
      done,
      get lastEventId() {
        return lastEventId;
      },
    };
  }

  // -- checkpoints ---------------------------------------------------------------------------

  listCheckpoints(options: { sessionId?: string; limit?: number } = {}): Promise<CheckpointList> {
    return this.request("GET", "/checkpoints", { query: { session_id: options.sessionId, limit: options.limit } });
  }

  /** Upload a checkpoint: a Blob, or (in Node) a file path, streamed from disk. */
  async uploadCheckpoint(
    file: Blob | string,
    options: { sessionId: string; epoch: number; metrics?: Record<string, number>; filename?: string },
  ): Promise<UploadedCheckpoint> {
    let blob: Blob;
    let name = options.filename ?? "checkpoint.pth";
    if (typeof file === "string") {
      const fs = await nodeModule<typeof import("node:fs")>("node:fs");
      const nodePath = await nodeModule<typeof import("node:path")>("node:path");
      blob = await fs.openAsBlob(file);
      name = options.filename ?? nodePath.basename(file);
    } else {
      blob = file;
    }
    const form = new FormData();
    // Fields before the file: the server can then stream the file without spooling it.
    form.set("session_id", options.sessionId);
    form.set("epoch", String(options.epoch));
    if (options.metrics) form.set("metrics", JSON.stringify(options.metrics));
    form.set("file", blob, name);
    return this.request("POST", "/checkpoints", { form });
  }

  /**
   * The checkpoint's bytes as a stream (follows a redirect to presigned storage). The
   * client's timeout covers the whole body: pass `timeoutMs: null` for a large file.
   */
  async downloadCheckpoint(
    checkpointId: string,
    options: { signal?: AbortSignal; timeoutMs?: number | null } = {},
  ): Promise<Response> {
    return this.fetchRaw("GET", `/checkpoints/${encodeURIComponent(checkpointId)}/download`, {
      ...options,
      headers: { Accept: "application/octet-stream" },
    });
  }

  /** Node: stream a checkpoint to `path`, written to `path.part` and renamed when whole. */
  async downloadCheckpointTo(checkpointId: string, path: string): Promise<string> {
    const response = await this.downloadCheckpoint(checkpointId);
    const fs = await nodeModule<typeof import("node:fs")>("node:fs");
    const { Readable } = await nodeModule<typeof import("node:stream")>("node:stream");
    const { pipeline } = await nodeModule<typeof import("node:stream/promises")>("node:stream/promises");
    if (!response.body) throw new APIConnectionError(`checkpoint ${checkpointId}: empty response`);
    const partial = `${path}.part`;
    try {
      await pipeline(Readable.fromWeb(response.body as never), fs.createWriteStream(partial));
      await fs.promises.rename(partial, path);
    } finally {
      await fs.promises.rm(partial, { force: true });
    }
    return path;
  }

  /**
   * A URL that downloads the checkpoint by plain navigation (a link), for a browser: with
   * `withToken` the key rides as `access_token`, which the API accepts for GETs only.
   */
  checkpointDownloadUrl(checkpointId: string, options: { withToken?: boolean } = {}): string {
    const token = options.withToken && this.apiKey ? this.apiKey : undefined;
    return this.url(`/checkpoints/${encodeURIComponent(checkpointId)}/download`, { access_token: token });
  }

  deleteCheckpoint(checkpointId: string): Promise<Message> {
    return this.request("DELETE", `/checkpoints/${encodeURIComponent(checkpointId)}`);
  }

  // -- model serving --------------------------------------------------------------------------

  /** Serve a checkpoint (a session's best, latest or an id; or an S3 file with its sha256). */
  deployModel(body: DeployModelRequest): Promise<ModelDetail> {
    return this.request("POST", "/models", { json: body });
  }

  async listModels(): Promise<ModelDetail[]> {
    return (await this.request<ModelList>("GET", "/models")).models;
  }

  getModel(name: string): Promise<ModelDetail> {
    return this.request("GET", `/models/${encodeURIComponent(name)}`);
  }

  /** Scale, or serve another checkpoint: new pods are Ready before old ones go. */
  updateModel(name: string, body: UpdateModelRequest): Promise<ModelDetail> {
    return this.request("PATCH", `/models/${encodeURIComponent(name)}`, { json: body });
  }

  deleteModel(name: string): Promise<ModelDeleted> {
    return this.request("DELETE", `/models/${encodeURIComponent(name)}`);
  }

  /**
   * Lesion candidates in each image: PNG (8 or 16 bit grayscale) or .npy bytes, as Blobs or
   * byte arrays; `returnMask` adds each probability map as a base64 PNG.
   */
  predict(
    name: string,
    images: Array<Blob | Uint8Array>,
    options: { returnMask?: boolean } = {},
  ): Promise<PredictResponse> {
    if (images.length === 0) throw new TypeError("predict needs at least one image");
    const form = new FormData();
    images.forEach((image, i) => {
      // A copy on an ArrayBuffer: a view of a SharedArrayBuffer is no BlobPart.
      const blob = image instanceof Blob ? image : new Blob([new Uint8Array(image)]);
      form.append("file", blob, `image${i}`);
    });
    const query = options.returnMask ? { return_mask: true } : undefined;
    return this.request("POST", `/models/${encodeURIComponent(name)}/predict`, { form, query });
  }

  // -- monitoring, alerts, webhooks, notifications ----------------------------------------------

  health(): Promise<Health> {
    return this.request("GET", "/health");
  }

  resources(): Promise<Resources> {
    return this.request("GET", "/monitor/resources");
  }

  /** The session trainer's latest `limit` GPU samples, oldest first (empty on a CPU run). */
  sessionGpu(sessionId: string, options: { limit?: number } = {}): Promise<SessionGpuHistory> {
    return this.request("GET", `/monitor/sessions/${encodeURIComponent(sessionId)}/gpu`, { query: options });
  }

  async listAlerts(
    options: { status?: Alert["status"]; severity?: Alert["severity"]; session_id?: string; limit?: number } = {},
  ): Promise<Alert[]> {
    return (await this.request<{ alerts: Alert[] }>("GET", "/alerts", { query: options })).alerts;
  }

  getAlert(alertId: string): Promise<Alert> {
    return this.request("GET", `/alerts/${encodeURIComponent(alertId)}`);
  }

  acknowledgeAlert(alertId: string, body: { acknowledged_by: string; notes?: string }): Promise<Alert> {
    return this.request("POST", `/alerts/${encodeURIComponent(alertId)}/acknowledge`, { json: body });
  }

  /** Resolve by hand; no new alert is raised for the rule until its condition has cleared. */
  resolveAlert(alertId: string, body: { resolved_by?: string; notes?: string } = {}): Promise<Alert> {
    return this.request("POST", `/alerts/${encodeURIComponent(alertId)}/resolve`, { json: body });
  }

  createAlertRule(rule: AlertRuleRequest): Promise<AlertRule> {
    return this.request("POST", "/alerts/rules", { json: rule });
  }

  async listAlertRules(): Promise<AlertRule[]> {
    return (await this.request<AlertRuleList>("GET", "/alerts/rules")).rules;
  }

  getAlertRule(ruleId: string): Promise<AlertRule> {
    return this.request("GET", `/alerts/rules/${encodeURIComponent(ruleId)}`);
  }

  updateAlertRule(ruleId: string, change: AlertRuleUpdate): Promise<AlertRule> {
    return this.request("PATCH", `/alerts/rules/${encodeURIComponent(ruleId)}`, { json: change });
  }

  deleteAlertRule(ruleId: string): Promise<Message> {
    return this.request("DELETE", `/alerts/rules/${encodeURIComponent(ruleId)}`);
  }

  /** Register a receiver; without `secret`, the response carries the generated one (once). */
  createWebhook(body: CreateWebhookRequest): Promise<WebhookCreated> {
    return this.request("POST", "/webhooks", { json: body });
  }

  testWebhook(webhookId: string): Promise<WebhookTestResult> {
    return this.request("POST", `/webhooks/${encodeURIComponent(webhookId)}/test`);
  }

  async listWebhooks(): Promise<Webhook[]> {
    return (await this.request<WebhookList>("GET", "/webhooks")).webhooks;
  }

  getWebhook(webhookId: string): Promise<Webhook> {
    return this.request("GET", `/webhooks/${encodeURIComponent(webhookId)}`);
  }

  updateWebhook(webhookId: string, change: { status: Webhook["status"] }): Promise<Webhook> {
    return this.request("PATCH", `/webhooks/${encodeURIComponent(webhookId)}`, { json: change });
  }

  deleteWebhook(webhookId: string): Promise<Message> {
    return this.request("DELETE", `/webhooks/${encodeURIComponent(webhookId)}`);
  }

  webhookDeliveries(webhookId: string, options: { limit?: number } = {}): Promise<WebhookDeliveryList> {
    return this.request("GET", `/webhooks/${encodeURIComponent(webhookId)}/deliveries`, { query: options });
  }

  async webhookDeadLetters(webhookId: string): Promise<WebhookDeadLetter[]> {
    const path = `/webhooks/${encodeURIComponent(webhookId)}/dead-letters`;
    return (await this.request<WebhookDeadLetterList>("GET", path)).dead_letters;
  }

  /** Queue one dead letter again (`eventId`), or all of them. */
  redeliverWebhook(webhookId: string, eventId?: string): Promise<WebhookRedelivered> {
    const base = `/webhooks/${encodeURIComponent(webhookId)}/dead-letters`;
    const path = eventId === undefined ? `${base}/redeliver` : `${base}/${encodeURIComponent(eventId)}/redeliver`;
    return this.request("POST", path);
  }

  async listNotifications(
    options: { type?: Notification["type"]; priority?: Notification["priority"]; unread?: boolean; limit?: number } = {},
  ): Promise<Notification[]> {
    return (await this.request<NotificationList>("GET", "/notifications", { query: options })).notifications;
  }

  /** The notifications with `unread_count` (of all of them, whatever the filters). */
  notificationList(
    options: { type?: Notification["type"]; priority?: Notification["priority"]; unread?: boolean; limit?: number } = {},
  ): Promise<NotificationList> {
    return this.request("GET", "/notifications", { query: options });
  }

  markNotificationRead(notificationId: string): Promise<Notification> {
    return this.request("POST", `/notifications/${encodeURIComponent(notificationId)}/read`);
  }

  clearNotifications(): Promise<Message> {
    return this.request("DELETE", "/notifications");
  }
}
