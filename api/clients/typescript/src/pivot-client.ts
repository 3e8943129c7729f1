// A fetch-based client for the PIVOT API (Node 20+ and browsers).
//
//   const client = new PIVOTClient("http://localhost:8000");   // or PIVOT_URL
//   const session = await client.createSession({ config_path: "configs/train.yaml" });
//   await client.startTraining(session.session_id);
//   client.streamMetrics(session.session_id, (m) => console.log(m.epoch, m.val_loss));
import {
  APIConnectionError,
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
  SessionMetrics,
  SessionSummary,
  StartedSession,
  StoppedSession,
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

type Query = Record<string, string | number | boolean | undefined | null>;

interface RequestOptions {
  query?: Query;
  json?: unknown;
  form?: FormData;
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
  const mod = (await import("ws")) as unknown as { WebSocket: WebSocketCtor };
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
    for (let attempt = 0; ; attempt++) {
      const init: RequestInit = {
        method,
        headers: this.headers(options.json !== undefined ? { "Content-Type": "application/json" } : {}),
        body: options.form ?? (options.json !== undefined ? JSON.stringify(options.json) : undefined),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: "follow",
      };
      let response: Response;
      try {
        response = await fetch(this.url(path, options.query), init);
      } catch (error) {
        if (attempt < this.maxRetries && (idempotent || neverSent(error))) {
          await sleep(backoffMs(attempt));
          continue;
        }
        const reason = (error as { cause?: Error })?.cause?.message ?? String(error);
        throw new APIConnectionError(`${method} ${path}: ${reason}`);
      }
      if (response.ok) return response;
      if (attempt < this.maxRetries && idempotent && (response.status === 429 || response.status === 503)) {
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
    options: { metricName?: string; startEpoch?: number; endEpoch?: number } = {},
  ): Promise<MetricHistory> {
    return this.request("GET", `/metrics/${encodeURIComponent(sessionId)}/history`, {
      query: { metric_name: options.metricName, start_epoch: options.startEpoch, end_epoch: options.endEpoch },
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
      const fs = await import("node:fs");
      const nodePath = await import("node:path");
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

  /** The checkpoint's bytes as a stream (follows a redirect to presigned storage). */
  async downloadCheckpoint(checkpointId: string): Promise<Response> {
    return this.fetchRaw("GET", `/checkpoints/${encodeURIComponent(checkpointId)}/download`);
  }

  /** Node: stream a checkpoint to `path`, written to `path.part` and renamed when whole. */
  async downloadCheckpointTo(checkpointId: string, path: string): Promise<string> {
    const response = await this.downloadCheckpoint(checkpointId);
    const fs = await import("node:fs");
    const { Readable } = await import("node:stream");
    const { pipeline } = await import("node:stream/promises");
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

  deleteCheckpoint(checkpointId: string): Promise<Message> {
    return this.request("DELETE", `/checkpoints/${encodeURIComponent(checkpointId)}`);
  }

  // -- monitoring, alerts, webhooks, notifications ----------------------------------------------

  health(): Promise<Health> {
    return this.request("GET", "/health");
  }

  resources(): Promise<Resources> {
    return this.request("GET", "/monitor/resources");
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

  markNotificationRead(notificationId: string): Promise<Notification> {
    return this.request("POST", `/notifications/${encodeURIComponent(notificationId)}/read`);
  }

  clearNotifications(): Promise<Message> {
    return this.request("DELETE", "/notifications");
  }
}
