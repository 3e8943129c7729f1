import { describe, expect, it } from "vitest";

import { differingKeys, fieldErrors, flatten, yamlLineOf } from "../src/lib/config";
import type { Session } from "@pivot/client";

import { advance, bestMetric, durationMs, etaMs, rankingMetric } from "../src/lib/session";

const t0 = Date.parse("2025-12-19T10:00:00Z");

describe("durationMs and etaMs", () => {
  it("times a run from its start to its end, or to now while it runs", () => {
    const base = { started_at: "2025-12-19T10:00:00Z", completed_at: null, stopped_at: null };
    expect(durationMs({ ...base, status: "running" }, t0 + 90_000)).toBe(90_000);
    expect(durationMs({ ...base, status: "completed", completed_at: "2025-12-19T10:05:00Z" }, t0 + 1e9)).toBe(300_000);
    expect(durationMs({ ...base, status: "stopped", stopped_at: "2025-12-19T10:01:00Z" }, t0 + 1e9)).toBe(60_000);
    expect(durationMs({ ...base, status: "created", started_at: null }, t0)).toBeNull();
  });

  it("estimates the time left at the pace so far", () => {
    const running = { status: "running" as const, started_at: "2025-12-19T10:00:00Z" };
    expect(etaMs({ ...running, progress: 0.25 }, t0 + 60_000)).toBe(180_000);
    expect(etaMs({ ...running, progress: 0 }, t0 + 60_000)).toBeNull();
    expect(etaMs({ ...running, progress: 1 }, t0 + 60_000)).toBeNull();
    expect(etaMs({ ...running, status: "completed" as const, progress: 0.5 }, t0 + 60_000)).toBeNull();
  });
});

describe("rankingMetric and bestMetric", () => {
  it("reads the checkpoint metric and its direction", () => {
    expect(rankingMetric({ config: { checkpoint: { metric: "val_dice" } } })).toEqual({ name: "val_dice", mode: "max" });
    expect(rankingMetric({ config: { checkpoint: { metric: "val_loss" } } })).toEqual({ name: "val_loss", mode: "min" });
    expect(rankingMetric({ config: { checkpoint: { metric: "val_dice", mode: "min" } } })).toEqual({ name: "val_dice", mode: "min" });
    expect(rankingMetric({ config: { epochs: 3 } })).toBeNull();
  });

  it("prefers a reported best, else the ranking metric's value", () => {
    const config = { checkpoint: { metric: "val_dice" } };
    expect(bestMetric({ config, latest_metrics: { best_metric: 0.9, val_dice: 0.5 } })).toEqual({ name: "val_dice", value: 0.9 });
    expect(bestMetric({ config: {}, latest_metrics: { best_val_froc: 0.7 } })).toEqual({ name: "val_froc", value: 0.7 });
    expect(bestMetric({ config, latest_metrics: { val_dice: 0.5 } })).toEqual({ name: "val_dice", value: 0.5 });
    expect(bestMetric({ config: {}, latest_metrics: { val_loss: 0.5 } })).toBeNull();
    // The session's own best checkpoint wins: it is what ranks best, not the latest value.
    const best = { checkpoint_id: "ckpt_s_e00002", epoch: 2, metric: "val_dice", value: 0.81 };
    expect(bestMetric({ config, latest_metrics: { val_dice: 0.5 }, best_checkpoint: best })).toEqual({
      name: "val_dice",
      value: 0.81,
    });
  });
});

describe("config helpers", () => {
  it("flattens nested keys, keeping lists as values", () => {
    expect(flatten({ a: 1, b: { c: 2, d: { e: [1, 2] } }, f: {} })).toEqual({ a: 1, "b.c": 2, "b.d.e": [1, 2], f: {} });
  });

  it("lists the keys that differ, including one that is missing", () => {
    const a = { epochs: 3, lr: 0.1, checkpoint: { metric: "val_dice" }, seed: 1 };
    const b = { epochs: 3, lr: 0.2, checkpoint: { metric: "val_loss" } };
    expect(differingKeys([a, b])).toEqual(["checkpoint.metric", "lr", "seed"]);
    expect(differingKeys([a, a])).toEqual([]);
    expect(differingKeys([b, a])).toEqual(["checkpoint.metric", "lr", "seed"]);
  });

  it("reads field errors from the API's envelope", () => {
    expect(
      fieldErrors({
        message: "invalid training config: 'epochs' must be an integer, got 'x'",
        details: { field: "config.epochs", reason: "'epochs' must be an integer, got 'x'" },
      }),
    ).toEqual([{ field: "config.epochs", message: "'epochs' must be an integer, got 'x'" }]);
    expect(
      fieldErrors({
        message: "tags.0: bad",
        details: { field: "tags.0", errors: [{ field: "tags.0", message: "bad" }, { field: "session_name", message: "too long" }] },
      }),
    ).toEqual([
      { field: "tags.0", message: "bad" },
      { field: "session_name", message: "too long" },
    ]);
    expect(fieldErrors({ message: "boom" })).toEqual([{ field: "", message: "boom" }]);
  });

  it("finds the YAML line of a key path by nesting, not by the first match", () => {
    const yaml = ["# comment", "epochs: 8", "dataset:", "  source: synthetic", "  metric: no", "checkpoint:", "  every_epochs: 1", "  metric: val_dice", "metric: top"].join("\n");
    expect(yamlLineOf(yaml, "epochs")).toBe(2);
    expect(yamlLineOf(yaml, "checkpoint.metric")).toBe(8);
    expect(yamlLineOf(yaml, "metric")).toBe(9);
    expect(yamlLineOf(yaml, "checkpoint.keep_last")).toBeNull();
    expect(yamlLineOf(yaml, "nothing")).toBeNull();
  });
});

describe("advance", () => {
  const base = {
    session_id: "s",
    status: "running",
    config: {},
    tags: [],
    current_epoch: 2,
    total_epochs: 4,
    progress: 0.5,
    latest_metrics: { train_loss: 0.9, val_loss: 1.0 },
  } as unknown as Session;
  const skip = new Set(["epoch", "timestamp", "loss", "step"]);

  it("moves epoch, progress and metrics on from a live record", () => {
    const next = advance(base, 3, { epoch: 3, timestamp: "t", loss: 0.7, train_loss: 0.6, val_loss: 0.7 }, skip);
    expect(next.current_epoch).toBe(3);
    expect(next.progress).toBe(0.75);
    expect(next.latest_metrics).toEqual({ train_loss: 0.6, val_loss: 0.7 });
  });

  it("leaves the session as it is for an older record", () => {
    expect(advance(base, 1, { epoch: 1, train_loss: 5 }, skip)).toBe(base);
  });
});
