// Chart series as parallel arrays sorted by x (uPlot's shape), and merging live points into
// them: a point the history already had (same x) is replaced, never drawn twice.

export interface Series {
  x: number[];
  y: (number | null)[];
}

export type Point = [x: number, y: number | null];

export const emptySeries = (): Series => ({ x: [], y: [] });

/** Series from parallel lists (e.g. a history response), sorted and unique by x. */
export function seriesOf(xs: readonly number[], ys: readonly (number | null)[]): Series {
  const points: Point[] = xs.map((x, i) => [x, ys[i] ?? null]);
  return mergePoints(emptySeries(), points);
}

/**
 * `series` with `points` merged in: sorted by x, one point per x (the newer value wins).
 * Returns the same object when nothing changed, so a chart can skip a redraw. Points past
 * the end — what a live stream brings — are appended without re-sorting.
 */
export function mergePoints(series: Series, points: readonly Point[]): Series {
  if (points.length === 0) return series;
  const last = series.x.length ? series.x[series.x.length - 1]! : -Infinity;
  let appendable = true;
  for (let i = 0, prev = last; i < points.length; i++) {
    const x = points[i]![0];
    if (!(x > prev)) {
      appendable = false;
      break;
    }
    prev = x;
  }
  if (appendable) {
    return { x: [...series.x, ...points.map((p) => p[0])], y: [...series.y, ...points.map((p) => p[1])] };
  }
  const byX = new Map<number, number | null>();
  for (let i = 0; i < series.x.length; i++) byX.set(series.x[i]!, series.y[i]!);
  let changed = false;
  for (const [x, y] of points) {
    if (!Number.isFinite(x)) continue;
    if (!byX.has(x) || !sameValue(byX.get(x)!, y)) changed = true;
    byX.set(x, y);
  }
  if (!changed) return series;
  const xs = [...byX.keys()].sort((a, b) => a - b);
  return { x: xs, y: xs.map((x) => byX.get(x)!) };
}

function sameValue(a: number | null, b: number | null): boolean {
  return a === b || (a !== null && b !== null && Number.isNaN(a) && Number.isNaN(b));
}

/** Several series on one x axis (uPlot's aligned data): the union of their x, null where absent. */
export function alignSeries(list: readonly Series[]): [number[], ...(number | null)[][]] {
  const xs = [...new Set(list.flatMap((s) => s.x))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = list.map((s) => {
    const column: (number | null)[] = new Array(xs.length).fill(null);
    for (let i = 0; i < s.x.length; i++) column[index.get(s.x[i]!)!] = s.y[i]!;
    return column;
  });
  return [xs, ...columns];
}

/** The last value and the best one (min or max), ignoring nulls and NaN. */
export function finalAndBest(
  series: Series,
  mode: "min" | "max",
): { final: number | null; best: number | null; bestAt: number | null } {
  let final: number | null = null;
  let best: number | null = null;
  let bestAt: number | null = null;
  for (let i = 0; i < series.x.length; i++) {
    const y = series.y[i];
    if (y === null || y === undefined || Number.isNaN(y)) continue;
    final = y;
    if (best === null || (mode === "min" ? y < best : y > best)) {
      best = y;
      bestAt = series.x[i]!;
    }
  }
  return { final, best, bestAt };
}

/** Lower is better for losses and errors; higher for the rest. */
export function modeFor(metric: string): "min" | "max" {
  return /loss|error|_err\b|perplexity/.test(metric) ? "min" : "max";
}
