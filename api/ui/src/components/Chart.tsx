// A uPlot chart that follows its container's width and the light/dark scheme. Data changes
// redraw in place (no new chart); `xRange` pins the x scale (the step chart's view). A chart
// scrolled out of view keeps its newest data and draws it when it comes back: a live page
// draws only what can be seen (software-composited pages paid for every chart each epoch).
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { useStore } from "../lib/store";
import type { Range } from "../lib/range";
import { scheme } from "../theme";

export interface ChartSeries {
  label: string;
  color: string;
  dash?: number[];
}

export interface ChartProps {
  data: uPlot.AlignedData;
  series: ChartSeries[];
  xLabel: string;
  height?: number;
  /** Pinned x scale; without it the chart fits the data. */
  xRange?: Range | null;
  /** A range dragged on the chart (the chart does not zoom itself when this is set). */
  onSelect?: (min: number, max: number) => void;
  /** Ctrl/⌘ + wheel (zoom, around the cursor) and Shift + wheel (pan). */
  onWheel?: (kind: "zoom" | "pan", amount: number, anchor: number) => void;
  /** The plotting area's width in CSS pixels, whenever it changes. */
  onWidth?: (px: number) => void;
  /** Whether the chart is on screen (or near it), whenever that changes. */
  onVisible?: (visible: boolean) => void;
  xTime?: boolean;
  label: string;
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export function Chart(props: ChartProps) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const latest = useRef(props);
  latest.current = props;
  const visible = useRef(true);
  const stale = useRef(false); // data changed while out of view
  const theme = useStore(scheme);
  const seriesKey = props.series.map((s) => `${s.label}:${s.color}`).join("|");
  const height = props.height ?? 220;

  useEffect(() => {
    const box = el.current!;
    const axis = cssVar("--chart-axis");
    const grid = cssVar("--chart-grid");
    const selectable = Boolean(latest.current.onSelect);
    const opts: uPlot.Options = {
      width: Math.max(200, box.clientWidth),
      height,
      scales: { x: { time: Boolean(latest.current.xTime) } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: !selectable }, points: { size: 6 } },
      axes: [
        {
          stroke: axis,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid },
          label: latest.current.xLabel,
          labelSize: 18,
          labelGap: 0,
          size: 40,
          // Epochs and steps are whole numbers: no tick at epoch 1.5.
          ...(latest.current.xTime
            ? { incrs: TIME_INCRS, values: (_u: uPlot, splits: number[]) => splits.map(clock) }
            : { incrs: INTEGER_INCRS }),
        },
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 56 },
      ],
      series: [
        { label: latest.current.xLabel },
        ...latest.current.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.75,
          dash: s.dash,
          spanGaps: true,
          points: { show: (u: uPlot) => u.data[0].length < 60, size: 5, fill: s.color },
        })),
      ],
      hooks: {
        draw: [(u) => markDrawn(box, u)],
        setSelect: [
          (u) => {
            const onSelect = latest.current.onSelect;
            if (!onSelect || u.select.width < 2) return;
            const min = u.posToVal(u.select.left, "x");
            const max = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            onSelect(min, max);
          },
        ],
      },
    };
    const u = new uPlot(opts, latest.current.data, box);
    plot.current = u;
    if (latest.current.xRange) u.setScale("x", latest.current.xRange);
    const onWheel = (event: WheelEvent) => {
      const handler = latest.current.onWheel;
      if (!handler) return;
      const anchor = event.offsetX / Math.max(1, u.over.clientWidth);
      if (event.ctrlKey || event.metaKey) {
        event.preventDefault();
        handler("zoom", event.deltaY > 0 ? 1.25 : 0.8, anchor);
      } else if (event.shiftKey || Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
        event.preventDefault();
        handler("pan", Math.sign(event.deltaX || event.deltaY) * 0.15, anchor);
      }
    };
    u.over.addEventListener("wheel", onWheel, { passive: false });
    let width = 0;
    const observer = new ResizeObserver(() => {
      const w = Math.max(200, box.clientWidth);
      if (w === width) return;
      width = w;
      u.setSize({ width: w, height });
      // The plotting area: the box less the y axis (its size above).
      latest.current.onWidth?.(Math.max(2, w - 64));
    });
    observer.observe(box);
    const sight = new IntersectionObserver(
      (entries) => {
        const now = entries[entries.length - 1]!.isIntersecting;
        if (now === visible.current) return;
        visible.current = now;
        if (now && stale.current) {
          stale.current = false;
          draw(u, latest.current);
        }
        latest.current.onVisible?.(now);
      },
      { rootMargin: "200px 0px" },
    );
    sight.observe(box);
    return () => {
      sight.disconnect();
      observer.disconnect();
      u.over.removeEventListener("wheel", onWheel);
      u.destroy();
      plot.current = null;
    };
  }, [seriesKey, theme, height]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    if (visible.current) draw(u, props);
    else stale.current = true;
  }, [props.data, props.xRange]);

  return <div class="chart" ref={el} role="img" aria-label={props.label} />;
}

function draw(u: uPlot, props: ChartProps): void {
  u.setData(props.data, !props.xRange);
  if (props.xRange) u.setScale("x", props.xRange);
}

/**
 * What the canvas shows after each draw, as data attributes of the chart's element: how many
 * draws so far, and the points and x range of the data drawn (bench/bench_ui.py times draws by
 * these; they help in devtools too). `data-draws` is written last.
 */
function markDrawn(box: HTMLElement, u: uPlot): void {
  const xs = u.data[0];
  const d = box.dataset;
  d.points = String(xs.length);
  d.firstX = xs.length ? String(xs[0]) : "";
  d.lastX = xs.length ? String(xs[xs.length - 1]) : "";
  d.draws = String(Number(d.draws ?? 0) + 1);
}

const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const clock = (seconds: number) => {
  const d = new Date(seconds * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
};
const INTEGER_INCRS = Array.from({ length: 30 }, (_, i) => [1, 2, 5][i % 3]! * 10 ** Math.floor(i / 3));

/** Distinct colors that read on light and dark backgrounds. */
export const PALETTE = ["#6366f1", "#f59e0b", "#10b981", "#ec4899", "#0ea5e9", "#84cc16", "#a855f7", "#ef4444", "#14b8a6", "#f97316"];
