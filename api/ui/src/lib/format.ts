// How numbers, sizes, durations and times read on every page: one place, unit tested.

const DASH = "—";

/** A metric value: 4 significant digits, exponent form for very large or small magnitudes. */
export function formatNumber(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  if (!Number.isFinite(value)) return value > 0 ? "∞" : "−∞";
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e6 || abs < 1e-3) return value.toExponential(digits - 2).replace("e+", "e");
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  return Number(value.toPrecision(digits)).toLocaleString("en-US", { maximumFractionDigits: 8 });
}

/** A fraction 0..1 as a whole percentage. */
export function formatPercent(fraction: number | null | undefined): string {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return DASH;
  return `${Math.round(fraction * 100)}%`;
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) return DASH;
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0)} ${UNITS[unit]}`;
}

/** A span of time: "45s", "3m 05s", "2h 04m", "3d 4h". */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return DASH;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/**
 * How often formatDuration(ms)'s text can change, for a clock that re-renders it: every second
 * under an hour; then it shows minutes (a 10 s tick lags them at most 10 s), then hours.
 */
export function durationTick(ms: number | null): number {
  return ms === null || ms < 3_600_000 ? 1000 : ms < 86_400_000 ? 10_000 : 60_000;
}

/** Milliseconds since the epoch of an ISO time, or null. */
export function parseTime(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** "just now", "12s ago", "5 min ago", "3 h ago", "2 d ago" (or "in …" for the future). */
export function formatRelative(iso: string | null | undefined, now: number): string {
  const t = parseTime(iso);
  if (t === null) return DASH;
  const diff = now - t;
  const abs = Math.abs(diff);
  if (abs < 5_000) return "just now";
  let text: string;
  if (abs < 60_000) text = `${Math.floor(abs / 1000)}s`;
  else if (abs < 3_600_000) text = `${Math.floor(abs / 60_000)} min`;
  else if (abs < 86_400_000) text = `${Math.floor(abs / 3_600_000)} h`;
  else if (abs < 30 * 86_400_000) text = `${Math.floor(abs / 86_400_000)} d`;
  else return formatAbsolute(iso).slice(0, 10);
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

const pad = (n: number) => String(n).padStart(2, "0");

/**
 * How often formatRelative's text for a time `ageMs` away can change: seconds in the first
 * minute, then minutes (a 30 s tick), then hours and days (5 min).
 */
export function relativeTick(ageMs: number | null): number {
  const age = ageMs === null ? Infinity : Math.abs(ageMs);
  return age < 60_000 ? 1000 : age < 3_600_000 ? 30_000 : 300_000;
}

/** Local date and time, "2025-12-19 10:30:05" (for a title on hover, and old dates). */
export function formatAbsolute(iso: string | null | undefined): string {
  const t = parseTime(iso);
  if (t === null) return DASH;
  const d = new Date(t);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A sha256 for a table: the first and last few hex digits. */
export function shortHash(hex: string, keep = 8): string {
  return hex.length <= keep * 2 + 1 ? hex : `${hex.slice(0, keep)}…${hex.slice(-4)}`;
}
