// The step-level train_loss chart. Zoom (drag a range, Ctrl/⌘+wheel, buttons) and pan
// (Shift+wheel, buttons, arrow keys) change the view; each view is fetched again at the
// chart's pixel width, so a 1M-step run draws as fast as a short one and a zoom shows the
// real points, not a stretched summary.
import type { StepHistory } from "@pivot/client";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { call } from "../api";
import { formatNumber } from "../lib/format";
import { isWhole, pan, selection, stepRequest, zoom, type Range } from "../lib/range";
import { Chart, PALETTE } from "./Chart";
import { Card, ErrorNote } from "./ui";

/** Live runs re-read the whole-run view this often (while the chart can be seen). */
export const STEP_REFRESH_MS = 5000;

export function StepChart({ sessionId, metric = "train_loss", live }: { sessionId: string; metric?: string; live: boolean }) {
  const [width, setWidth] = useState(0);
  const [view, setView] = useState<Range | null>(null);
  const [bounds, setBounds] = useState<Range | null>(null);
  const [data, setData] = useState<StepHistory | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const latestRequest = useRef(0);
  const [visible, setVisible] = useState(true);
  const shown = useRef(""); // the view and width the chart shows (a live refresh keeps them)

  // While the session runs, the whole-run view is re-read every STEP_REFRESH_MS, on the
  // chart's own clock: steps arrive all through an epoch (not only at its end), and open pages
  // refresh at different moments, not all at once on each epoch. Not while scrolled out of
  // view; once more when the run ends, so the chart holds its last steps.
  const [refresh, setRefresh] = useState(0);
  const away = useRef(false); // scrolled out of view while live: it missed refreshes
  useEffect(() => {
    if (!live) return;
    if (!visible) {
      away.current = true;
      return;
    }
    if (away.current) {
      away.current = false;
      setRefresh((n) => n + 1);
    }
    const timer = setInterval(() => setRefresh((n) => n + 1), STEP_REFRESH_MS);
    return () => clearInterval(timer);
  }, [live, visible]);
  const wasLive = useRef(live);
  useEffect(() => {
    if (wasLive.current && !live) setRefresh((n) => n + 1);
    wasLive.current = live;
  }, [live]);

  // Fetch what the view shows (after a short pause, so a burst of wheel zooms is one request);
  // an answer to an older request than the latest is dropped.
  useEffect(() => {
    if (width <= 0) return;
    const req = stepRequest(view, bounds, width);
    const key = JSON.stringify([view, width]);
    const timer = setTimeout(() => {
      const id = ++latestRequest.current;
      // A spinner for a new view, not for the live refresh of the one shown.
      if (key !== shown.current) setLoading(true);
      call((c) => c.stepHistory(sessionId, { metricName: metric, ...req }))
        .then((h) => {
          if (id !== latestRequest.current) return;
          shown.current = key;
          setData(h);
          setError(null);
          if (req.startStep === undefined && h.steps.length) setBounds({ min: h.steps[0]!, max: h.steps[h.steps.length - 1]! });
        })
        .catch((e: unknown) => {
          if (id === latestRequest.current) setError(e);
        })
        .finally(() => {
          if (id === latestRequest.current) setLoading(false);
        });
    }, 60);
    return () => clearTimeout(timer);
  }, [sessionId, metric, width, view, isWhole(view, bounds) ? refresh : 0]);

  const chartData = useMemo<[number[], (number | null)[]]>(() => (data ? [data.steps, data.values] : [[], []]), [data]);
  const whole = isWhole(view, bounds);
  const apply = (next: Range | null) => setView(next && bounds && isWhole(next, bounds) ? null : next);
  const current = view ?? bounds;

  const onKey = (e: KeyboardEvent) => {
    if (!current || !bounds) return;
    const moves: Record<string, () => Range> = {
      ArrowLeft: () => pan(current, bounds, -0.25),
      ArrowRight: () => pan(current, bounds, 0.25),
      "+": () => zoom(current, bounds, 0.5),
      "=": () => zoom(current, bounds, 0.5),
      "-": () => zoom(current, bounds, 2),
    };
    const move = moves[e.key];
    if (move) {
      e.preventDefault();
      apply(move());
    } else if (e.key === "0" || e.key === "Escape") apply(null);
  };

  const hasData = data !== null && data.steps.length > 0;
  return (
    <Card
      title="Step train loss"
      class="step-card"
      actions={
        <div class="btn-group" role="group" aria-label="Zoom and pan">
          <button class="btn btn-sm" disabled={!current || !bounds} onClick={() => current && bounds && apply(pan(current, bounds, -0.5))} aria-label="Pan left">
            ←
          </button>
          <button class="btn btn-sm" disabled={!current || !bounds} onClick={() => current && bounds && apply(zoom(current, bounds, 0.5))} aria-label="Zoom in">
            +
          </button>
          <button class="btn btn-sm" disabled={!current || !bounds || whole} onClick={() => current && bounds && apply(zoom(current, bounds, 2))} aria-label="Zoom out">
            −
          </button>
          <button class="btn btn-sm" disabled={!current || !bounds} onClick={() => current && bounds && apply(pan(current, bounds, 0.5))} aria-label="Pan right">
            →
          </button>
          <button class="btn btn-sm" disabled={whole} onClick={() => apply(null)} data-testid="step-reset">
            Reset
          </button>
        </div>
      }
    >
      <ErrorNote error={error} />
      <div class="chart-box" tabIndex={0} onKeyDown={onKey} aria-label="Step chart: drag to zoom, arrow keys pan, + and − zoom, 0 resets">
        <Chart
          label={`${metric} by global step`}
          data={chartData}
          series={[{ label: metric, color: PALETTE[0]! }]}
          xLabel="step"
          xRange={view}
          onSelect={(a, b) => bounds && apply(selection(a, b, bounds))}
          onWheel={(kind, amount, anchor) => {
            if (!current || !bounds) return;
            apply(kind === "zoom" ? zoom(current, bounds, amount, anchor) : pan(current, bounds, amount));
          }}
          onWidth={setWidth}
          onVisible={setVisible}
        />
        {!hasData && !loading && <div class="chart-empty">No step metrics yet.</div>}
      </div>
      <div class="chart-foot subtle small" data-testid="step-info">
        {data && (
          <>
            {/* the steps asked for: the view's whole steps */}
            {whole ? "whole run" : `steps ${formatNumber(Math.floor(view!.min))}–${formatNumber(Math.ceil(view!.max))}`}
            {" · "}
            <span data-testid="step-points">{data.steps.length}</span> of {data.total_points.toLocaleString("en-US")} points
            {data.downsampled ? " (min/max per pixel)" : ""}
          </>
        )}
        {loading && <span class="spinner spinner-sm" aria-label="Loading" />}
        <span class="hint">Drag to zoom · Ctrl+wheel zoom · Shift+wheel pan</span>
      </div>
    </Card>
  );
}
