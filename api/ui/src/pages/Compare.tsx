// Compare 2–10 sessions: one metric overlaid (by epoch, or train_loss by step), final and best
// of every metric, and the config keys that differ — as MLflow's and W&B's compare views do.
import type { MetricRecord, Session, StepHistory } from "@pivot/client";
import { useEffect, useMemo, useState } from "preact/hooks";

import { call } from "../api";
import { Chart, PALETTE } from "../components/Chart";
import { Card, Empty, ErrorNote, Spinner, StatusBadge } from "../components/ui";
import { differingKeys, flatten } from "../lib/config";
import { formatNumber } from "../lib/format";
import { alignSeries, finalAndBest, modeFor, seriesOf, type Series } from "../lib/series";
import { sortedSessions } from "../lib/sessionList";
import { href, navigate, useLocation } from "../router";
import { useSessionsFeed } from "../sessionsFeed";

const MAX = 10;
const STEPS = "train_loss (steps)";

export function parseIds(text: string | null): string[] {
  return [...new Set((text ?? "").split(",").map((s) => s.trim()).filter(Boolean))].slice(0, MAX);
}

interface Loaded {
  session: Session;
  records: MetricRecord[];
}

export function ComparePage() {
  const { query } = useLocation();
  const ids = parseIds(query.get("ids"));
  const metric = query.get("metric") ?? "val_loss";
  const [loaded, setLoaded] = useState<Record<string, Loaded>>({});
  const [errors, setErrors] = useState<Record<string, unknown>>({});
  const [steps, setSteps] = useState<Record<string, StepHistory>>({});
  const [width, setWidth] = useState(800);

  const setQuery = (nextIds: string[], nextMetric = metric) =>
    navigate(`/compare?ids=${nextIds.map(encodeURIComponent).join(",")}${nextMetric !== "val_loss" ? `&metric=${encodeURIComponent(nextMetric)}` : ""}`, { replace: true });

  useEffect(() => {
    for (const id of ids) {
      if (loaded[id] || errors[id]) continue;
      Promise.all([call((c) => c.getSession(id)), call((c) => c.getMetrics(id, { limit: 100_000 }))])
        .then(([session, metrics]) => setLoaded((prev) => ({ ...prev, [id]: { session, records: metrics.metrics } })))
        .catch((e: unknown) => setErrors((prev) => ({ ...prev, [id]: e })));
    }
  }, [ids.join(",")]);

  useEffect(() => {
    if (metric !== STEPS) return;
    for (const id of ids) {
      call((c) => c.stepHistory(id, { maxPoints: Math.max(50, width) }))
        .then((h) => setSteps((prev) => ({ ...prev, [id]: h })))
        .catch(() => undefined);
    }
  }, [metric, ids.join(","), width]);

  const ready = ids.filter((id) => loaded[id]);
  const seriesBy = useMemo(() => {
    const out: Record<string, Record<string, Series>> = {};
    for (const id of ready) {
      const records = loaded[id]!.records;
      const names = new Set(records.flatMap((r) => Object.keys(r).filter((k) => k !== "epoch" && k !== "timestamp")));
      out[id] = {};
      for (const name of names) {
        out[id]![name] = seriesOf(
          records.map((r) => r.epoch),
          records.map((r) => (typeof r[name] === "number" ? (r[name] as number) : null)),
        );
      }
    }
    return out;
  }, [ready.join(","), loaded]);
  const metrics = useMemo(() => [...new Set(Object.values(seriesBy).flatMap((m) => Object.keys(m)))].sort(), [seriesBy]);

  const chart = useMemo(() => {
    const list = ready.map((id) => {
      if (metric === STEPS) {
        const h = steps[id];
        return h ? seriesOf(h.steps, h.values) : { x: [], y: [] };
      }
      return seriesBy[id]?.[metric] ?? { x: [], y: [] };
    });
    return alignSeries(list);
  }, [ready.join(","), metric, seriesBy, steps]);
  const nameOf = (id: string) => loaded[id]?.session.session_name || id;
  const diff = useMemo(() => differingKeys(ready.map((id) => loaded[id]!.session.config)), [ready.join(","), loaded]);

  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Compare sessions</h1>
          <p class="subtle">Pick 2 to {MAX} sessions.</p>
        </div>
      </div>
      <Picker ids={ids} onChange={(next) => setQuery(next)} />
      {ids.length < 2 ? (
        <Card>
          <Empty>Select at least two sessions to compare.</Empty>
        </Card>
      ) : (
        <>
          {ids.filter((id) => errors[id]).map((id) => (
            <ErrorNote key={id} error={`${id}: ${(errors[id] as Error)?.message ?? errors[id]}`} />
          ))}
          {ready.length < ids.filter((id) => !errors[id]).length && <Spinner label="Loading sessions…" />}
          <Card
            title="Overlay"
            actions={
              <select value={metric} onChange={(e) => setQuery(ids, (e.target as HTMLSelectElement).value)} aria-label="Metric" data-testid="compare-metric">
                {[...new Set([...metrics, metric])].filter((m) => m !== STEPS).map((m) => (
                  <option value={m} key={m}>
                    {m} (by epoch)
                  </option>
                ))}
                <option value={STEPS}>{STEPS}</option>
              </select>
            }
          >
            <div data-testid="compare-chart">
              <Chart
                label={`${metric} of ${ready.length} sessions`}
                data={chart}
                series={ready.map((id, i) => ({ label: nameOf(id), color: PALETTE[i % PALETTE.length]! }))}
                xLabel={metric === STEPS ? "step" : "epoch"}
                height={300}
                onWidth={setWidth}
              />
            </div>
          </Card>
          <Card title="Final and best">
            <div class="table-wrap">
              <table class="table" data-testid="compare-table">
                <thead>
                  <tr>
                    <th>Session</th>
                    <th>Status</th>
                    <th class="num">Epochs</th>
                    {metrics.map((m) => (
                      <th class="num" key={m} title={`final / best (${modeFor(m) === "min" ? "lowest" : "highest"})`}>
                        {m}
                        <div class="subtle small">final / best</div>
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {ready.map((id, i) => {
                    const s = loaded[id]!.session;
                    return (
                      <tr key={id} data-session-id={id}>
                        <td class="nowrap">
                          <span class="swatch" style={{ background: PALETTE[i % PALETTE.length] }} aria-hidden="true" />
                          <a href={href(`/sessions/${encodeURIComponent(id)}`)}>{nameOf(id)}</a>
                        </td>
                        <td>
                          <StatusBadge status={s.status} />
                        </td>
                        <td class="num">
                          {s.current_epoch}/{s.total_epochs}
                        </td>
                        {metrics.map((m) => {
                          const fb = seriesBy[id]?.[m] ? finalAndBest(seriesBy[id]![m]!, modeFor(m)) : null;
                          const winner = isWinner(ready, seriesBy, m, id);
                          return (
                            <td class="num mono" key={m}>
                              {formatNumber(fb?.final)} / <span class={winner ? "winner" : ""}>{formatNumber(fb?.best)}</span>
                            </td>
                          );
                        })}
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          </Card>
          <Card title={`Config: ${diff.length} ${diff.length === 1 ? "key differs" : "keys differ"}`}>
            {diff.length === 0 ? (
              <Empty>The configs are the same.</Empty>
            ) : (
              <div class="table-wrap">
                <table class="table" data-testid="config-diff">
                  <thead>
                    <tr>
                      <th>Key</th>
                      {ready.map((id) => (
                        <th key={id}>{nameOf(id)}</th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {diff.map((k) => (
                      <tr key={k}>
                        <td class="mono">{k}</td>
                        {ready.map((id) => {
                          const flat = flatten(loaded[id]!.session.config);
                          return (
                            <td class="mono" key={id}>
                              {k in flat ? JSON.stringify(flat[k]) : <span class="muted">—</span>}
                            </td>
                          );
                        })}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </Card>
        </>
      )}
    </div>
  );
}

function isWinner(ids: string[], seriesBy: Record<string, Record<string, Series>>, metric: string, id: string): boolean {
  const mode = modeFor(metric);
  let bestId: string | null = null;
  let best: number | null = null;
  for (const other of ids) {
    const s = seriesBy[other]?.[metric];
    const b = s ? finalAndBest(s, mode).best : null;
    if (b !== null && (best === null || (mode === "min" ? b < best : b > best))) {
      best = b;
      bestId = other;
    }
  }
  return bestId === id && ids.length > 1;
}

function Picker({ ids, onChange }: { ids: string[]; onChange: (ids: string[]) => void }) {
  const list = useSessionsFeed();
  const [q, setQ] = useState("");
  const sessions = useMemo(() => sortedSessions(list), [list]);
  const shown = sessions
    .filter((s) => !q || s.session_id.includes(q) || (s.session_name ?? "").toLowerCase().includes(q.toLowerCase()))
    .slice(0, 50);
  return (
    <Card title="Sessions" actions={<span class="subtle small">{ids.length} selected</span>}>
      <input type="search" placeholder="Filter sessions…" value={q} onInput={(e) => setQ((e.target as HTMLInputElement).value)} aria-label="Filter sessions to pick" />
      <ul class="picker" data-testid="compare-picker">
        {shown.map((s) => {
          const on = ids.includes(s.session_id);
          return (
            <li key={s.session_id}>
              <label class={on ? "on" : ""}>
                <input
                  type="checkbox"
                  checked={on}
                  disabled={!on && ids.length >= MAX}
                  onChange={() => onChange(on ? ids.filter((i) => i !== s.session_id) : [...ids, s.session_id])}
                />
                <span>{s.session_name || s.session_id}</span>
                <StatusBadge status={s.status} />
              </label>
            </li>
          );
        })}
      </ul>
    </Card>
  );
}
