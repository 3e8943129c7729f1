// The client's types. Those the server documents come from its OpenAPI document
// (src/openapi.ts, generated); the rest are written from the API reference until the server
// serves them.
import type { components } from "./openapi.js";

type Schemas = components["schemas"];

export type CreateSessionRequest = Schemas["CreateSessionRequest"];
export type CreatedSession = Schemas["CreateSessionResponse"];
export type StartedSession = Schemas["StartSessionResponse"];
export type StoppedSession = Schemas["StopSessionResponse"];
export type Session = Schemas["SessionDetail"];
export type SessionSummary = Schemas["SessionSummary"];
export type SessionList = Schemas["SessionList"];
export type SessionMetrics = Schemas["SessionMetrics"];
export type MetricRecord = Schemas["MetricRecord"];
export type MetricHistory = Schemas["MetricHistory"];
export type StepHistory = Schemas["StepHistory"];
export type Health = Schemas["HealthResponse"];
export type Checkpoint = Schemas["Checkpoint"];
export type CheckpointList = Schemas["CheckpointList"];
export type UploadedCheckpoint = Schemas["CheckpointUploaded"];
export type Message = Schemas["MessageResponse"];
export type ErrorBody = Schemas["ErrorBody"];
export type SessionStatus = Session["status"];

/** One epoch record: the reference's `Metrics` (epoch, timestamp and metric values). */
export interface Metrics {
  epoch: number;
  timestamp?: string | null;
  train_loss?: number;
  val_loss?: number;
  train_accuracy?: number;
  val_accuracy?: number;
  learning_rate?: number;
  /**
   * The live streams' `loss` (what the reference's examples print as "Loss"): the record's
   * own `loss` if it has one, else `val_loss`, else (an epoch without validation)
   * `train_loss`; null when that value is not finite. Absent from GET .../metrics records.
   */
  loss?: number | null;
  [key: string]: unknown;
}

/** The data of an SSE `metrics` event: the epoch record with `epoch` and `loss`. */
export type LiveMetricsEvent = Schemas["LiveMetricsEvent"];
/** A WebSocket `metrics` message: `epoch`, `loss` and the record's values under `metrics`. */
export type LiveMetricsMessage = Schemas["LiveMetricsMessage"];
/** The data of an SSE `status` event (a WebSocket `status` message adds `type`). */
export type LiveStatusEvent = Schemas["LiveStatusEvent"];

export type Resources = Schemas["ResourcesResponse"];
export type GpuStats = Schemas["GpuStats"];
export type TrainerGpu = Schemas["TrainerGpu"];
export type GpuSample = Schemas["GpuSample"];
export type SessionGpuTelemetry = Schemas["SessionGpuTelemetry"];
export type SessionGpuHistory = Schemas["SessionGpuHistory"];

export type Alert = Schemas["Alert"];
export type AlertList = Schemas["AlertList"];
export type AlertRule = Schemas["AlertRule"];
export type AlertRuleList = Schemas["AlertRuleList"];
export type Severity = Alert["severity"];
type RuleBody = Schemas["AlertRuleRequest"];
type RuleRequired = "name" | "metric" | "condition";
/** A rule as created or replaced: the fields with a server default may be left out. */
export type AlertRuleRequest = Pick<RuleBody, RuleRequired> & Partial<Omit<RuleBody, RuleRequired>>;
/** The fields a PATCH changes; the others stay. */
export type AlertRuleUpdate = Partial<Schemas["AlertRuleUpdate"]>;

export type CreateWebhookRequest = Schemas["CreateWebhookRequest"];
export type WebhookEvent = CreateWebhookRequest["events"][number];
export type Webhook = Schemas["Webhook"];
/** The create response: `secret` is the generated secret, shown this once. */
export type WebhookCreated = Schemas["WebhookCreated"];
export type WebhookList = Schemas["WebhookList"];
export type WebhookTestResult = Schemas["WebhookTestResult"];
export type WebhookDelivery = Schemas["WebhookDelivery"];
export type WebhookDeliveryList = Schemas["WebhookDeliveryList"];
export type WebhookDeadLetter = Schemas["WebhookDeadLetter"];
export type WebhookDeadLetterList = Schemas["WebhookDeadLetterList"];
export type WebhookRedelivered = Schemas["WebhookRedelivered"];

export type Notification = Schemas["Notification"];
export type NotificationList = Schemas["NotificationList"];

/** A live message of `/ws/training/{id}` other than metrics. */
export interface LiveMessage {
  type: "metrics" | "status" | "checkpoint" | "error" | string;
  id?: string;
  [key: string]: unknown;
}

// -- the dashboard's reads ----------------------------------------------------------------

/** `GET /auth/whoami`: who the key is; with auth off, no name and scope admin. */
export type WhoAmI = Schemas["WhoAmI"];

// Model serving (ModelServer resources and predictions).
// replicas has a server-side default (1): optional here.
export type DeployModelRequest = Omit<Schemas["DeployModelRequest"], "replicas"> & { replicas?: number };
export type UpdateModelRequest = Schemas["UpdateModelRequest"];
export type ModelDetail = Schemas["ModelDetail"];
export type ModelList = Schemas["ModelList"];
export type ModelDeleted = Schemas["ModelDeleted"];
export type PredictResponse = Schemas["PredictResponse"];
export type ImagePrediction = Schemas["ImagePrediction"];
export type Candidate = Schemas["Candidate"];
/** A Kubernetes Event of a session's CR or of one of its pods. */
export type SessionEvent = Schemas["SessionEvent"];
/** `GET /training/sessions/{id}/events`: oldest first. */
export type SessionEventList = Schemas["SessionEvents"];
/** A YAML file of the server's configs dir: its config when valid, else why not. */
export type ConfigEntry = Schemas["ConfigFile"];
export type ConfigList = Schemas["ConfigList"];

/** One event of `/sse/sessions`: the list's changes (after a snapshot on a fresh connection). */
export type SessionsEvent =
  | { type: "session"; id?: string; session: Session }
  | { type: "deleted"; id?: string; session_id: string }
  /** The server cannot replay since the given id: drop what you hold, a snapshot follows. */
  | { type: "reset"; id?: string }
  /** The snapshot (or the replay since Last-Event-ID) is complete. */
  | { type: "ready"; id?: string; count: number };

/** One event of `/sse/training/{id}`. */
export type TrainingEvent =
  | { type: "metrics"; id?: string; data: LiveMetricsEvent }
  | { type: "status"; id?: string; data: LiveStatusEvent }
  | { type: "checkpoint"; id?: string; data: Record<string, unknown> & { checkpoint_id?: string; epoch?: number } };
