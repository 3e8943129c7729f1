// The step chart's view: which range of global steps it shows, and the request that fills it.
// Zoom and pan are pure functions of (view, bounds) so the chart code only draws.

export interface Range {
  min: number;
  max: number;
}

/** The fewest steps a view spans: zooming further shows nothing new. */
const MIN_SPAN = 4;

export interface StepRequest {
  startStep?: number;
  endStep?: number;
  maxPoints: number;
}

/**
 * The request for a view `widthPx` pixels wide: at most one point per pixel (the server keeps
 * each bucket's min and max, so the shape survives), and the view's whole steps. No view (or
 * the whole run) asks without bounds, so steps written since are included.
 */
export function stepRequest(view: Range | null, bounds: Range | null, widthPx: number): StepRequest {
  const maxPoints = Math.max(2, Math.min(100_000, Math.round(widthPx)));
  if (!view || (bounds && covers(view, bounds))) return { maxPoints };
  return { startStep: Math.max(0, Math.floor(view.min)), endStep: Math.max(0, Math.ceil(view.max)), maxPoints };
}

function covers(view: Range, bounds: Range): boolean {
  return view.min <= bounds.min && view.max >= bounds.max;
}

function clamp(view: Range, bounds: Range): Range {
  const span = Math.min(view.max - view.min, bounds.max - bounds.min);
  let min = view.min;
  if (min < bounds.min) min = bounds.min;
  if (min + span > bounds.max) min = bounds.max - span;
  return { min, max: min + span };
}

/**
 * Zoom by `factor` (< 1 in, > 1 out) around `anchor`, a fraction of the view's width (0.5:
 * its middle; the cursor's place for a wheel). Never past the run's bounds, never narrower
 * than a few steps.
 */
export function zoom(view: Range, bounds: Range, factor: number, anchor = 0.5): Range {
  const span = view.max - view.min;
  const full = bounds.max - bounds.min;
  const next = Math.min(full, Math.max(Math.min(MIN_SPAN, full), span * factor));
  const at = view.min + span * Math.min(1, Math.max(0, anchor));
  return clamp({ min: at - next * anchor, max: at - next * anchor + next }, bounds);
}

/** Pan by `fraction` of the view's width (negative: towards earlier steps). */
export function pan(view: Range, bounds: Range, fraction: number): Range {
  const shift = (view.max - view.min) * fraction;
  return clamp({ min: view.min + shift, max: view.max + shift }, bounds);
}

/** A range selected on the chart, kept inside the bounds and at least a few steps wide. */
export function selection(min: number, max: number, bounds: Range): Range {
  const lo = Math.min(min, max);
  const hi = Math.max(min, max);
  const mid = (lo + hi) / 2;
  const half = Math.max(hi - lo, Math.min(MIN_SPAN, bounds.max - bounds.min)) / 2;
  return clamp({ min: mid - half, max: mid + half }, bounds);
}

export function isWhole(view: Range | null, bounds: Range | null): boolean {
  return !view || !bounds || covers(view, bounds);
}
