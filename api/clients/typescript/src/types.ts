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
export type MetricHistory = Schemas["MetricHistory"];
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
  /** val_loss, or train_loss for an epoch without validation (the WebSocket's `loss`). */
  loss?: number | null;
  [key: string]: unknown;
}

export interface Resources {
  timestamp: string;
  cpu: { percent: number; count: number; per_cpu?: number[] };
  memory: { percent: number; used_gb: number; total_gb: number };
  disk: { percent: number; used_gb: number; total_gb: number };
  gpu: Array<Record<string, unknown>>;
}

export type Severity = "low" | "medium" | "high" | "critical";

export interface Alert {
  alert_id: string;
  rule_name: string;
  severity: Severity;
  message: string;
  value: number;
  threshold: number;
  triggered_at: string;
  acknowledged_at?: string;
  resolved_at?: string;
  status: "active" | "acknowledged" | "resolved";
}

export interface AlertRule {
  name: string;
  metric: string;
  condition: string;
  threshold: number;
  severity: Severity;
  enabled?: boolean;
}

export interface Webhook {
  webhook_id: string;
  url: string;
  created_at: string;
  status: string;
}

export interface WebhookTestResult {
  success: boolean;
  status_code?: number;
  response_time_ms?: number;
}

export interface Notification {
  id: string;
  type: "training" | "alert" | "system";
  priority: "low" | "medium" | "high";
  message: string;
  data: Record<string, unknown>;
  read: boolean;
  created_at: string;
}

/** A live message of `/ws/training/{id}` other than metrics. */
export interface LiveMessage {
  type: "metrics" | "status" | "checkpoint" | "error" | string;
  id?: string;
  [key: string]: unknown;
}
