// The TypeScript client against a running PIVOT API (PIVOT_URL), with node's test runner.
// `tests/integration/client/test_typescript.py` starts the local platform and runs these.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import {
  APIStatusError,
  ConflictError,
  NotFoundError,
  PIVOTClient,
  ValidationError,
  type CreateSessionRequest,
  type Metrics,
} from "../src/index.js";

const URL_ = process.env.PIVOT_URL;
const skip = URL_ ? false : "PIVOT_URL is not set: no API to test against";

const TINY = {
  epochs: 3,
  batch_size: 16,
  learning_rate: 0.01,
  image_size: 16,
  num_train: 64,
  num_val: 16,
  base_channels: 4,
  seed: 7,
};

/** Collects a whole metrics stream; resolves when the session has ended. */
async function streamAll(client: PIVOTClient, sessionId: string): Promise<Metrics[]> {
  const seen: Metrics[] = [];
  const stream = client.streamMetrics(sessionId, (m) => seen.push(m), { maxReconnects: 20 });
  await stream.done;
  return seen;
}

/**
 * A TCP proxy in front of the API that cuts every WebSocket connection in the middle of its
 * `framesPerConnection + 1`th frame (frames, not bytes: messages may be compressed).
 */
async function cuttingProxy(
  target: URL,
  framesPerConnection: number,
): Promise<{ url: string; cuts: () => number; close: () => void }> {
  let cuts = 0;
  const server = net.createServer((downstream) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    let pending = Buffer.alloc(0); // bytes not yet forwarded
    let inHeaders = true;
    let frames = 0;
    const cut = () => {
      cuts++;
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on("data", (chunk) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (inHeaders) {
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) return;
        downstream.write(pending.subarray(0, end + 4));
        pending = pending.subarray(end + 4);
        inHeaders = false;
      }
      for (;;) {
        if (pending.length < 2) return;
        let length = pending[1]! & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (pending.length < 4) return;
          length = pending.readUInt16BE(2);
          offset = 4;
        } else if (length === 127) {
          if (pending.length < 10) return;
          length = Number(pending.readBigUInt64BE(2));
          offset = 10;
        }
        if (frames === framesPerConnection) {
          downstream.write(pending.subarray(0, Math.max(1, Math.floor((offset + length) / 2))), cut);
          return;
        }
        if (pending.length < offset + length) return;
        downstream.write(pending.subarray(0, offset + length));
        pending = pending.subarray(offset + length);
        frames++;
      }
    });
    upstream.on("close", () => downstream.end());
    downstream.on("close", () => upstream.destroy());
    upstream.on("error", () => downstream.destroy());
    downstream.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, cuts: () => cuts, close: () => server.close() };
}

describe("PIVOTClient", { skip }, () => {
  const client = new PIVOTClient(URL_);

  it("reports health", async () => {
    const health = await client.health();
    assert.ok(["healthy", "degraded"].includes(health.status));
  });

  it("streams every epoch once, as stored", async () => {
    const session = await client.createSession({ config: TINY, session_name: "ts" });
    assert.equal(session.status, "created");
    const started = await client.startTraining(session.session_id);
    assert.equal(started.status, "running");
    const seen = await streamAll(client, session.session_id);
    assert.deepEqual(seen.map((m) => m.epoch), [1, 2, 3]);
    const stored = await client.getMetrics(session.session_id);
    assert.deepEqual(seen.map((m) => m.val_loss), stored.metrics.map((m) => m.val_loss));
    const history = await client.metricHistory(session.session_id, { metricName: "val_loss" });
    assert.deepEqual(history.epochs, [1, 2, 3]);
  });

  it("resumes a cut WebSocket without losing or repeating a record", async () => {
    const session = await client.createSession({ config: { ...TINY, epochs: 4 } });
    await client.startTraining(session.session_id);
    const proxy = await cuttingProxy(new URL(client.baseUrl), 2);
    try {
      const flaky = new PIVOTClient(proxy.url);
      const seen = await streamAll(flaky, session.session_id);
      assert.ok(proxy.cuts() >= 2, "the proxy never cut the stream");
      assert.deepEqual(seen.map((m) => m.epoch), [1, 2, 3, 4]);
    } finally {
      proxy.close();
    }
  });

  it("maps errors to classes", async () => {
    await assert.rejects(client.getSession("sess-nosuch"), NotFoundError);
    await assert.rejects(client.createSession({ config: { ...TINY, epochs: 0 } }), (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.details.field, "config.epochs");
      return true;
    });
    const session = await client.createSession({ config: { ...TINY, epochs: 500 } });
    await client.startTraining(session.session_id);
    await assert.rejects(client.startTraining(session.session_id), ConflictError);
    await client.stopTraining(session.session_id);
    const stream = client.streamMetrics("sess-nosuch", () => undefined, { onError: () => undefined });
    await assert.rejects(stream.done, NotFoundError);
  });

  it("creates a GPU session with its placement, checked as the CRD checks it", async () => {
    const body: CreateSessionRequest = {
      config: TINY,
      session_name: "ts-gpu",
      resources: { gpu: 1, cpu: "4", memory: "16Gi" },
      node_selector: { "nvidia.com/gpu.product": "NVIDIA-H200" },
      tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
      replicas: 2,
    };
    const session = await client.createSession(body);
    assert.equal(session.status, "created");
    await assert.rejects(
      client.createSession({ config: TINY, resources: { memory: "16 gigs" } }),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.equal(err.details.field, "resources.memory");
        return true;
      },
    );
  });

  it("lists every session across pages", async () => {
    const created = await client.createSession({ config: TINY });
    const ids: string[] = [];
    for await (const s of client.listSessions({ pageSize: 2 })) ids.push(s.session_id);
    assert.ok(ids.includes(created.session_id));
    assert.equal(new Set(ids).size, ids.length);
  });

  it("uploads, downloads and deletes a checkpoint", async () => {
    const session = await client.createSession({ config: TINY });
    const dir = await mkdtemp(join(tmpdir(), "pivot-ts-"));
    const source = join(dir, "model.pth");
    const bytes = Buffer.alloc(300_000, 7);
    await writeFile(source, bytes);
    const up = await client.uploadCheckpoint(source, { sessionId: session.session_id, epoch: 1, metrics: { val_loss: 0.5 } });
    const listed = await client.listCheckpoints({ sessionId: session.session_id });
    assert.deepEqual(listed.checkpoints.map((c) => c.checkpoint_id), [up.checkpoint_id]);
    const copy = await client.downloadCheckpointTo(up.checkpoint_id, join(dir, "copy.pth"));
    const digest = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    assert.equal(digest(await readFile(copy)), digest(bytes));
    await client.deleteCheckpoint(up.checkpoint_id);
    await assert.rejects(client.deleteCheckpoint(up.checkpoint_id), NotFoundError);
  });
});

describe("model servers", { skip }, () => {
  const client = new PIVOTClient(URL_);

  it("deploys, reads, updates and deletes one; predict says when no replica is ready", async () => {
    const name = `ts-${Math.random().toString(36).slice(2, 8)}`;
    const made = await client.deployModel({ name, session_id: "sess-no-such", replicas: 0 });
    assert.equal(made.name, name);
    assert.equal(made.checkpoint, "best");
    assert.equal(made.predict_url, `/api/v1/models/${name}/predict`);
    assert.ok((await client.listModels()).some((m) => m.name === name));
    const scaled = await client.updateModel(name, { replicas: 2, checkpoint: "latest" });
    assert.equal(scaled.replicas, 2);
    assert.equal(scaled.checkpoint, "latest");
    await assert.rejects(client.deployModel({ name, session_id: "x" }), ConflictError);
    await assert.rejects(
      client.predict(name, [new Uint8Array([0x89, 0x50, 0x4e, 0x47])]),
      (error: unknown) => error instanceof APIStatusError && error.status === 503,
    );
    await client.deleteModel(name);
    await assert.rejects(client.getModel(name), NotFoundError);
  });
});

describe("alerts and notifications", { skip }, () => {
  const client = new PIVOTClient(URL_);
  const until = async <T>(probe: () => Promise<T | undefined>, what: string): Promise<T> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const found = await probe();
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  it("creates, updates and deletes a rule; its alert is acknowledged and resolves", async () => {
    const rule = await client.createAlertRule({
      name: "ts_cpu",
      metric: "cpu_percent",
      condition: "greater_than",
      threshold: -1,
      severity: "high",
    });
    assert.equal(rule.severity, "high");
    assert.ok((await client.listAlertRules()).some((r) => r.rule_id === rule.rule_id));
    assert.equal((await client.getAlertRule(rule.rule_id)).name, "ts_cpu");
    const alert = await until(
      async () => (await client.listAlerts({ status: "active" })).find((a) => a.rule_id === rule.rule_id),
      "an alert",
    );
    const acked = await client.acknowledgeAlert(alert.alert_id, { acknowledged_by: "ts", notes: "on it" });
    assert.equal(acked.status, "acknowledged");
    assert.equal((await client.updateAlertRule(rule.rule_id, { enabled: false })).enabled, false);
    await until(async () => {
      const a = await client.getAlert(alert.alert_id);
      return a.status === "resolved" ? a : undefined;
    }, "the resolve");
    await assert.rejects(client.resolveAlert(alert.alert_id), ConflictError);
    await client.deleteAlertRule(rule.rule_id);
    await assert.rejects(client.getAlertRule(rule.rule_id), NotFoundError);
    await assert.rejects(
      client.createAlertRule({ name: "x", metric: "cpu_percent", condition: "less_than" }),
      ValidationError,
    );
  });

  it("lists, marks and clears notifications", async () => {
    const rule = await client.createAlertRule({
      name: "ts_notify",
      metric: "memory_percent",
      condition: "greater_than",
      threshold: -1,
      severity: "critical",
    });
    try {
      const note = await until(
        async () =>
          (await client.listNotifications({ type: "alert", priority: "high" })).find(
            (n) => n.data.rule_id === rule.rule_id,
          ),
        "an alert notification",
      );
      assert.equal((await client.markNotificationRead(note.id)).read, true);
      assert.ok(!(await client.listNotifications({ unread: true })).some((n) => n.id === note.id));
      await assert.rejects(client.markNotificationRead("notif_missing"), NotFoundError);
    } finally {
      await client.deleteAlertRule(rule.rule_id);
    }
    assert.match((await client.clearNotifications()).message, /cleared/);
  });
});
