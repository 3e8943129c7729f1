// One session: its state, live charts (history + the session's SSE), checkpoints, log,
// Kubernetes events and config; start and stop.
import type { Checkpoint, Session, SessionEvent, TrainingEvent } from "@pivot/client";
import { NotFoundError } from "@pivot/client";
import { dump } from "js-yaml";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";

import { call, canWrite, client, trackStream } from "../api";
import { Checkpoints } from "../components/Checkpoints";
import { EpochCharts } from "../components/EpochCharts";
import { GpuPanel } from "../components/GpuPanel";
import { LogPanel } from "../components/LogPanel";
import { StepChart } from "../components/StepChart";
import { Card, Confirm, Empty, ErrorNote, Progress, RelTime, Spinner, StatusBadge, Tags, Ticking, usePoll } from "../components/ui";
import { durationTick, formatAbsolute, formatDuration, formatNumber } from "../lib/format";
import { mergePoints, seriesOf, type Point, type Series } from "../lib/series";
import { advance, durationMs, etaMs, isFinal } from "../lib/session";
import { href } from "../router";

const NOT_METRICS = new Set(["epoch", "timestamp", "loss", "step"]);

export function SessionPage({ id }: { id: string }) {
  const [session, setSession] = useState<Session | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [series, setSeries] = useState<Record<string, Series>>({});
  const [checkpoints, setCheckpoints] = useState<Checkpoint[] | null>(null);
  const [checkpointError, setCheckpointError] = useState<unknown>(null);
  const [events, setEvents] = useState<SessionEvent[] | null>(null);
  const [eventsError, setEventsError] = useState<unknown>(null);
  const [confirm, setConfirm] = useState<"start" | "stop" | null>(null);
  const final = session ? isFinal(session.status) : true;
  const wasLive = useRef(false); // this page followed the session while it ran
  if (session && !final) wasLive.current = true;
  // A live epoch moves the session on (a new object, the same config): not a new YAML.
  const configYaml = useMemo(() => (session ? dump(session.config, { lineWidth: 100, noRefs: true }) : ""), [session?.config]);

  const loadSession = useCallback(async () => {
    try {
      setSession(await call((c) => c.getSession(id)));
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [id]);
  const loadCheckpoints = useCallback(async () => {
    try {
      setCheckpoints((await call((c) => c.listCheckpoints({ sessionId: id }))).checkpoints);
      setCheckpointError(null);
    } catch (e) {
      setCheckpointError(e);
    }
  }, [id]);
  const loadEvents = useCallback(async () => {
    try {
      setEvents((await call((c) => c.sessionEvents(id))).events);
      setEventsError(null);
    } catch (e) {
      setEventsError(e);
    }
  }, [id]);

  const merge = useCallback((points: Record<string, Point[]>) => {
    setSeries((prev) => {
      let next = prev;
      for (const [name, list] of Object.entries(points)) {
        const before = prev[name] ?? { x: [], y: [] };
        const after = mergePoints(before, list);
        if (after !== before) next = { ...next, [name]: after };
      }
      return next;
    });
  }, []);

  // The state itself: polled while it may change without a trainer event (created, pending:
  // every 5 s); while it runs, its stream brings epochs and status changes, and a slow poll
  // only refreshes the rest (conditions, message).
  const running = session?.status === "running";
  usePoll(loadSession, running ? 30_000 : 5000, [id, running], !final || session === null);
  useEffect(() => {
    void loadCheckpoints();
    void loadEvents();
  }, [id]);

  // History of every metric the session reports, merged with what the live stream brings.
  const metricNames = session ? Object.keys(session.latest_metrics ?? {}).sort().join(",") : "";
  const fetched = useRef(new Set<string>());
  const loadHistory = (names: string[]) => {
    for (const name of names) {
      fetched.current.add(name);
      call((c) => c.metricHistory(id, { metricName: name, maxPoints: 5000 }))
        .then((h) => {
          const s = seriesOf(h.epochs, h.values);
          merge({ [name]: s.x.map((x, i) => [x, s.y[i]!] as Point) });
        })
        .catch(() => fetched.current.delete(name));
    }
  };
  useEffect(() => {
    loadHistory(metricNames.split(",").filter(Boolean).filter((name) => !fetched.current.has(name)));
  }, [id, metricNames]);

  // Live: epochs as they are written, status changes, checkpoints; until a final status.
  useEffect(() => {
    if (session === null || final) return;
    const tracker = trackStream();
    const stream = client.watchTraining(
      id,
      (event: TrainingEvent) => {
        if (event.type === "metrics") {
          const record = event.data as Record<string, unknown>;
          const epoch = Number(record.epoch);
          const points: Record<string, Point[]> = {};
          for (const [key, value] of Object.entries(record)) {
            if (!NOT_METRICS.has(key) && (typeof value === "number" || value === null)) points[key] = [[epoch, value]];
          }
          merge(points);
          // Epoch, progress and metrics from the record itself; the status events and the
          // slow poll bring the rest.
          setSession((prev) => (prev === null ? prev : advance(prev, epoch, record, NOT_METRICS)));
        } else if (event.type === "checkpoint") {
          void loadCheckpoints();
        } else if (event.type === "status") {
          void loadSession();
          void loadEvents();
        }
      },
      { onState: tracker.onState, onError: () => tracker.done() },
    );
    return () => {
      stream.close();
      tracker.done();
    };
  }, [id, session === null, final]);

  // The final status arrived: the checkpoints and events are read again, and so is the
  // history, since the stream closes on that status. A stop reads "stopped" at once, while the
  // trainer still writes the epoch it cut short and its checkpoint (within its grace period):
  // those are read again over that period (the stop e2e missed that epoch under load).
  useEffect(() => {
    if (!session || !final) return;
    void loadCheckpoints();
    void loadEvents();
    if (!wasLive.current) return;
    loadHistory([...fetched.current]);
    if (session.status !== "stopped") return;
    const timers = settleDelays(session).map((ms) =>
      setTimeout(() => {
        loadHistory([...fetched.current]);
        void loadCheckpoints();
      }, ms),
    );
    return () => timers.forEach(clearTimeout);
  }, [final]);

  if (error instanceof NotFoundError) {
    return (
      <div class="page">
        <h1>Session not found</h1>
        <p>
          There is no session <span class="mono">{id}</span>. <a href={href("/")}>Back to the sessions</a>
        </p>
      </div>
    );
  }
  if (!session) return error ? <div class="page"><ErrorNote error={error} /></div> : <Spinner label="Loading session…" />;

  const s = session;
  const replicas = Number((s.config as { replicas?: unknown }).replicas ?? 1) || 1;
  const writable = canWrite();
  const canStart = writable && (s.status === "created" || s.status === "stopped");
  const canStop = writable && (s.status === "running" || s.status === "pending");
  const live = s.status === "running" || s.status === "pending";

  return (
    <div class="page">
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href={href("/")}>Sessions</a> <span aria-hidden="true">/</span> <span class="mono">{s.session_id}</span>
      </nav>
      <div class="page-head">
        <div>
          <h1>
            {s.session_name || s.session_id} <StatusBadge status={s.status} />
          </h1>
          <p class="subtle">
            <span class="mono">{s.session_id}</span> · <Tags tags={s.tags} />
          </p>
        </div>
        <div class="page-actions">
          {canStart && (
            <button class="btn btn-primary" onClick={() => setConfirm("start")} data-testid="start">
              {s.status === "stopped" ? "Resume" : "Start"}
            </button>
          )}
          {canStop && (
            <button class="btn btn-danger" onClick={() => setConfirm("stop")} data-testid="stop">
              Stop
            </button>
          )}
          <a class="btn" href={href(`/compare?ids=${encodeURIComponent(s.session_id)}`)}>
            Compare…
          </a>
        </div>
      </div>

      <section class="stats" aria-label="Summary">
        <div class="stat wide">
          <div class="stat-label">Progress</div>
          <Progress value={s.progress ?? 0} status={s.status} />
          <div class="subtle small">
            epoch <span data-testid="epoch">{s.current_epoch ?? 0}</span> of {s.total_epochs}
          </div>
        </div>
        <div class="stat">
          <div class="stat-label">ETA</div>
          <div class="stat-value" data-testid="eta">
            <Ticking every={(now) => durationTick(etaMs(s, now))}>
              {(now) => {
                const eta = etaMs(s, now);
                return eta === null ? (live ? "estimating…" : "—") : formatDuration(eta);
              }}
            </Ticking>
          </div>
        </div>
        <div class="stat">
          <div class="stat-label">Duration</div>
          <div class="stat-value">
            <Ticking every={(now) => durationTick(durationMs(s, now))}>{(now) => formatDuration(durationMs(s, now))}</Ticking>
          </div>
        </div>
        <div class="stat">
          <div class="stat-label">val_loss</div>
          <div class="stat-value mono">{formatNumber(s.latest_metrics?.val_loss)}</div>
        </div>
        <div class="stat">
          <div class="stat-label">Created</div>
          <div class="stat-value small">
            <RelTime iso={s.created_at} />
          </div>
          <div class="subtle small">{s.started_at ? `started ${formatAbsolute(s.started_at)}` : "not started"}</div>
        </div>
      </section>
      {s.message && (
        <p class={`message ${s.status === "failed" ? "message-error" : ""}`} data-testid="message">
          {s.message}
        </p>
      )}

      {Object.keys(series).length > 0 ? (
        <EpochCharts series={series} />
      ) : (
        <Card title="Loss">
          <Empty>{live ? "Waiting for the first epoch…" : "No epoch metrics."}</Empty>
        </Card>
      )}
      {s.status !== "created" && <StepChart sessionId={id} live={live} />}
      <GpuPanel sessionId={id} live={live} />
      <div class="two-col">
        <Checkpoints items={checkpoints} error={checkpointError} onChanged={() => void loadCheckpoints()} />
        <Card title="Config" id="config">
          <pre class="yaml" data-testid="config-yaml">{configYaml}</pre>
        </Card>
      </div>
      {s.status !== "created" && <LogPanel sessionId={id} live={live} replicas={replicas} />}
      <ConditionsCard conditions={s.conditions ?? []} />
      <EventsCard events={events} error={eventsError} />

      {confirm && (
        <Confirm
          title={confirm === "start" ? "Start training?" : "Stop training?"}
          confirmLabel={confirm === "start" ? "Start" : "Stop"}
          danger={confirm === "stop"}
          onConfirm={async () => {
            if (confirm === "start") await call((c) => c.startTraining(id));
            else await call((c) => c.stopTraining(id));
            await loadSession();
          }}
          onClose={() => setConfirm(null)}
        >
          {confirm === "start" ? (
            <p>
              <strong>{s.session_name || s.session_id}</strong> starts training{s.status === "stopped" ? " from its last checkpoint" : ""}.
            </p>
          ) : (
            <p>
              <strong>{s.session_name || s.session_id}</strong> stops now; its trainer saves a checkpoint first. You can resume it later.
            </p>
          )}
        </Confirm>
      )}
    </div>
  );
}

/** The CR's conditions (`kubectl describe ts`): what the operator last concluded, and why. */
function ConditionsCard({ conditions }: { conditions: Session["conditions"] }) {
  if (!conditions || conditions.length === 0) return null;
  return (
    <Card title="Conditions" id="conditions">
      <div class="table-wrap">
        <table class="table" data-testid="conditions-table">
          <thead>
            <tr>
              <th>Type</th>
              <th>Status</th>
              <th>Reason</th>
              <th>Message</th>
              <th>Since</th>
            </tr>
          </thead>
          <tbody>
            {conditions.map((c) => (
              <tr key={c.type} class={c.status === "False" ? "warn" : ""}>
                <td>{c.type}</td>
                <td>
                  <span class={`badge ${c.status === "True" ? "sev-low" : "sev-high"}`}>{c.status}</span>
                </td>
                <td>{c.reason ?? ""}</td>
                <td class="wrap">{c.message ?? ""}</td>
                <td class="nowrap">
                  <RelTime iso={c.last_transition_time ?? null} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

function EventsCard({ events, error }: { events: SessionEvent[] | null; error: unknown }) {
  return (
    <Card title="Events" id="events">
      <ErrorNote error={error} />
      {events === null ? null : events.length === 0 ? (
        <Empty>No events.</Empty>
      ) : (
        <div class="table-wrap">
          <table class="table events" data-testid="events-table">
            <thead>
              <tr>
                <th>Type</th>
                <th>Reason</th>
                <th>Object</th>
                <th>Message</th>
                <th class="num">Count</th>
                <th>Last seen</th>
              </tr>
            </thead>
            <tbody>
              {[...events].reverse().map((e, i) => (
                <tr key={i} class={e.type === "Warning" ? "warn" : ""}>
                  <td>
                    <span class={`badge ${e.type === "Warning" ? "sev-high" : "sev-low"}`}>{e.type}</span>
                  </td>
                  <td>{e.reason}</td>
                  <td class="mono small">
                    {e.object.kind}/{e.object.name}
                  </td>
                  <td class="wrap">{e.message}</td>
                  <td class="num">{e.count}</td>
                  <td class="nowrap">
                    <RelTime iso={e.last_timestamp ?? e.first_timestamp} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Card>
  );
}

/** When a stopped session's late writes are looked for: 2 s, 5 s, 10 s, ... up to the
 * trainer's grace period (config.checkpoint.grace_period_seconds, else the operator's 60 s). */
function settleDelays(s: Session): number[] {
  const checkpoint = (s.config as { checkpoint?: { grace_period_seconds?: unknown } }).checkpoint;
  const grace = Number(checkpoint?.grace_period_seconds) || 60;
  const delays = [2, 5, 10, 20, 40].filter((d) => d < grace);
  return [...delays, grace].map((d) => d * 1000);
}
