// What a session's page and row derive from the session object: timing, ETA, its metric.
import type { Session } from "@pivot/client";

import { parseTime } from "./format";

export const FINAL_STATUSES = new Set(["completed", "failed", "stopped"]);
export const ACTIVE_STATUSES = new Set(["running", "pending"]);

export const isFinal = (status: string) => FINAL_STATUSES.has(status);

/** Time spent training: from start to its end (or now, while it runs). */
export function durationMs(s: Pick<Session, "status" | "started_at" | "completed_at" | "stopped_at">, now: number): number | null {
  const start = parseTime(s.started_at);
  if (start === null) return null;
  const end = parseTime(s.completed_at) ?? parseTime(s.stopped_at) ?? (ACTIVE_STATUSES.has(s.status) ? now : null);
  return end === null ? null : Math.max(0, end - start);
}

/**
 * Time left at the pace so far: elapsed × (1 − p) / p. Null until there is a pace (no epoch
 * done yet) or once it is not running.
 */
export function etaMs(s: Pick<Session, "status" | "started_at" | "progress">, now: number): number | null {
  const start = parseTime(s.started_at);
  const p = s.progress ?? 0;
  if (s.status !== "running" || start === null || !(p > 0) || p >= 1) return null;
  return ((now - start) * (1 - p)) / p;
}

/** The metric that ranks the session's checkpoints (config.checkpoint.metric), if set. */
export function rankingMetric(s: Pick<Session, "config">): { name: string; mode: "min" | "max" } | null {
  const checkpoint = (s.config as { checkpoint?: { metric?: unknown; mode?: unknown } } | undefined)?.checkpoint;
  if (!checkpoint || typeof checkpoint.metric !== "string") return null;
  const name = checkpoint.metric;
  const mode = checkpoint.mode === "min" || checkpoint.mode === "max" ? checkpoint.mode : name.endsWith("_loss") ? "min" : "max";
  return { name, mode };
}

/**
 * The "best metric" column: the value of the checkpoint that ranks best (the session's
 * `best_checkpoint`), else a `best_metric` or `best_<name>` value it reports, else the latest
 * value of the metric that ranks its checkpoints. Null when it has none of these.
 */
export function bestMetric(
  s: Pick<Session, "config" | "latest_metrics"> & Partial<Pick<Session, "best_checkpoint">>,
): { name: string; value: number } | null {
  const best = s.best_checkpoint;
  if (best && typeof best.value === "number") return { name: best.metric ?? "best", value: best.value };
  const latest = s.latest_metrics ?? {};
  const ranking = rankingMetric(s);
  if (typeof latest.best_metric === "number") return { name: ranking?.name ?? "best", value: latest.best_metric };
  for (const [key, value] of Object.entries(latest)) {
    if (key.startsWith("best_") && typeof value === "number") return { name: key.slice(5), value };
  }
  if (ranking && typeof latest[ranking.name] === "number") return { name: ranking.name, value: latest[ranking.name]! };
  return null;
}

/**
 * The session as a live epoch record moves it on: epoch, progress and latest metrics, without
 * asking the API (50 open dashboards each re-reading the session after every epoch cost more
 * than drawing the point). An older record (a replay) leaves it as it is.
 */
export function advance(s: Session, epoch: number, record: Record<string, unknown>, skip: Set<string>): Session {
  if (!Number.isFinite(epoch) || epoch < (s.current_epoch ?? 0)) return s;
  const latest: Record<string, number> = {};
  for (const [key, value] of Object.entries(record)) {
    if (!skip.has(key) && typeof value === "number") latest[key] = value;
  }
  const total = s.total_epochs ?? 0;
  return {
    ...s,
    current_epoch: epoch,
    progress: total > 0 ? Math.min(1, epoch / total) : s.progress,
    latest_metrics: { ...(s.latest_metrics ?? {}), ...latest },
  };
}
