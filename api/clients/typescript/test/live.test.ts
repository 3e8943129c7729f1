// The live parts of the client: the SSE parser and line splitter (no server needed), and the
// dashboard's endpoints against a running API (PIVOT_URL).
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AuthenticationError,
  LineSplitter,
  NotFoundError,
  PIVOTClient,
  SSEParser,
  type LiveState,
  type SessionsEvent,
  type TrainingEvent,
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

describe("SSEParser", () => {
  it("parses events, ids, comments and retry, whatever the chunk boundaries", () => {
    const text =
      "retry: 1000\n\n: heartbeat\n\nid: 1-0\nevent: session\ndata: {\"a\":1}\n\n" +
      "event: ready\r\ndata: {\"count\":1}\r\n\r\ndata: x\ndata: y\n\n";
    // Every split point, including one between the CR and LF of a CRLF.
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new SSEParser();
      const got = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
      assert.deepEqual(got, [
        { event: "session", data: '{"a":1}', id: "1-0" },
        { event: "ready", data: '{"count":1}', id: "1-0" },
        { event: "message", data: "x\ny", id: "1-0" },
      ]);
      assert.equal(parser.retryMs, 1000);
    }
  });

  it("dispatches a named event without data, and nothing for a lone comment", () => {
    const parser = new SSEParser();
    assert.deepEqual(parser.feed("event: reset\n\n: ping\n\n"), [{ event: "reset", data: "" }]);
  });

  it("keeps an unfinished event until its blank line", () => {
    const parser = new SSEParser();
    assert.deepEqual(parser.feed("event: a\ndata: 1\n"), []);
    assert.deepEqual(parser.feed("\n"), [{ event: "a", data: "1" }]);
  });
});

describe("LineSplitter", () => {
  it("splits LF and CRLF lines across chunks and flushes the last", () => {
    const lines = new LineSplitter();
    assert.deepEqual(lines.feed("a\r"), []);
    assert.deepEqual(lines.feed("\nb\nc"), ["a", "b"]);
    assert.deepEqual(lines.feed("d\n\n"), ["cd", ""]);
    assert.deepEqual(lines.feed("tail"), []);
    assert.deepEqual(lines.flush(), ["tail"]);
    assert.deepEqual(lines.flush(), []);
  });
});

describe("dashboard endpoints", { skip }, () => {
  const client = new PIVOTClient(URL_);

  it("says who the key is; a wrong key is refused", async () => {
    const me = await client.whoami();
    assert.ok(me.scope !== null && ["read", "write", "admin"].includes(me.scope));
    if (me.auth_enabled) {
      await assert.rejects(new PIVOTClient(URL_, { apiKey: "pvt_not-a-key-of-this-server" }).whoami(), AuthenticationError);
    }
  });

  it("lists the configs dir", async () => {
    const { configs } = await client.listConfigs();
    // Each is either valid (its config) or not (why): one of the two, never both.
    assert.ok(configs.every((c) => typeof c.config_path === "string" && (c.config == null) !== (c.error == null)));
  });

  it("streams the session list: snapshot, ready, then changes", async () => {
    const session = await client.createSession({ config: TINY, session_name: "ts-live-list" });
    const events: SessionsEvent[] = [];
    const states: LiveState[] = [];
    let ready: () => void;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    let completed: () => void;
    const isCompleted = new Promise<void>((resolve) => (completed = resolve));
    const stream = client.watchSessions(
      (event) => {
        events.push(event);
        if (event.type === "ready") ready();
        if (event.type === "session" && event.session.session_id === session.session_id && event.session.status === "completed") completed();
      },
      { onState: (s) => states.push(s) },
    );
    try {
      await isReady;
      const snapshot = events.filter((e) => e.type === "session").map((e) => (e as { session: { session_id: string } }).session.session_id);
      assert.ok(snapshot.includes(session.session_id), "the snapshot has the new session");
      await client.startTraining(session.session_id);
      await isCompleted;
      assert.ok(stream.lastEventId, "events carry ids");
    } finally {
      stream.close();
    }
    await stream.done;
    assert.deepEqual(states.slice(0, 2), ["connecting", "open"]);
    assert.equal(states.at(-1), "closed");
  });

  it("streams a session's epochs until its final status, then its events and logs", async (t) => {
    const session = await client.createSession({ config: TINY });
    await client.startTraining(session.session_id);
    const seen: TrainingEvent[] = [];
    const stream = client.watchTraining(session.session_id, (e) => seen.push(e));
    await stream.done;
    const epochs = seen.filter((e) => e.type === "metrics").map((e) => (e.type === "metrics" ? e.data.epoch : 0));
    assert.deepEqual(epochs, [1, 2, 3]);
    assert.equal(seen.at(-1)?.type, "status");
    const steps = await client.stepHistory(session.session_id, { maxPoints: 4 });
    assert.ok(steps.steps.length <= 4 && steps.total_points >= steps.steps.length);
    const { events } = await client.sessionEvents(session.session_id);
    assert.ok(events.length > 0, "the CR and its pod have events");
    await assert.rejects(client.sessionEvents("sess-nosuch"), NotFoundError);
    const text = await client.sessionLogs(session.session_id);
    assert.ok(text.length > 0, "the trainer logged");
    const followed: string[] = [];
    // The pod has ended: a followed log is the whole log, and then it ends.
    for await (const line of client.followLogs(session.session_id)) followed.push(line);
    assert.deepEqual(followed, text.replace(/\n$/, "").split("\n"));
    const tail = await client.sessionLogs(session.session_id, { tail: 1 });
    assert.equal(tail.trimEnd(), followed.at(-1));
  });

  it("ends a watch of an unknown session with NotFoundError", async () => {
    const stream = client.watchTraining("sess-nosuch", () => undefined, { onError: () => undefined });
    await assert.rejects(stream.done, NotFoundError);
  });
});
