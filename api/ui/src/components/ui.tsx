// Small building blocks every page uses.
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { formatAbsolute, formatPercent, formatRelative, parseTime, relativeTick } from "../lib/format";
import { createStore, type Store } from "../lib/store";

// One interval per period for the whole page: every clock of a period ticks in the same task,
// so a page's relative times and durations re-render in one frame, not one frame each.
const clocks = new Map<number, { store: Store<number>; users: number; timer: ReturnType<typeof setInterval> }>();

function clockOf(ms: number): Store<number> {
  let clock = clocks.get(ms);
  if (!clock) {
    const store = createStore(Date.now());
    clock = { store, users: 0, timer: setInterval(() => store.set(Date.now()), ms) };
    clocks.set(ms, clock);
  }
  clock.users++;
  return clock.store;
}

function releaseClock(ms: number): void {
  const clock = clocks.get(ms);
  if (clock && --clock.users === 0) {
    clearInterval(clock.timer);
    clocks.delete(ms);
  }
}

/** The current time, re-read every `ms` (relative times and durations tick). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const store = clockOf(ms);
    setNow(store.get());
    const unsubscribe = store.subscribe(setNow);
    return () => {
      unsubscribe();
      releaseClock(ms);
    };
  }, [ms]);
  return now;
}

/**
 * What depends on the clock, re-rendered alone each tick: a page that shows a ticking
 * duration does not re-render (its tables, its charts' props) every second for it.
 */
export function Ticking({ every = 1000, children }: { every?: number | ((now: number) => number); children: (now: number) => ComponentChildren }) {
  const now = useTicks(typeof every === "number" ? () => every : every);
  return <>{children(now)}</>;
}

/** The current time, re-read every `periodOf(now)` ms: a period that changes as time passes. */
function useTicks(periodOf: (now: number) => number): number {
  const [period, setPeriod] = useState(() => periodOf(Date.now()));
  const now = useNow(period);
  const next = periodOf(now);
  useEffect(() => {
    if (next !== period) setPeriod(next);
  }, [next, period]);
  return now;
}

/** Runs `fn` now and every `ms` while mounted (and `enabled`); never two at once. */
export function usePoll(fn: () => Promise<unknown>, ms: number, deps: unknown[], enabled = true): void {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    if (!enabled) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        await latest.current();
      } catch {
        /* the page shows its own error; keep polling */
      }
      if (!stopped) timer = setTimeout(() => void tick(), ms);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [...deps, enabled, ms]);
}

export function StatusBadge({ status }: { status: string }) {
  return (
    <span class={`badge status-${status}`} data-status={status}>
      {status === "running" && <span class="pulse" aria-hidden="true" />}
      {status}
    </span>
  );
}

export function SeverityBadge({ severity }: { severity: string }) {
  return <span class={`badge sev-${severity}`}>{severity}</span>;
}

export function Progress({ value, status }: { value: number; status?: string }) {
  const pct = Math.max(0, Math.min(1, value || 0));
  return (
    <div class={`progress ${status ? `status-${status}` : ""}`} role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct * 100)}>
      <div class="progress-fill" style={{ width: `${pct * 100}%` }} />
      <span class="progress-text">{formatPercent(pct)}</span>
    </div>
  );
}

/**
 * A time as "5 min ago", the exact local time on hover. It ticks by itself, as often as its
 * text can change: every second for the first minute, then every 30 s, then every 5 min.
 */
export function RelTime({ iso }: { iso: string | null | undefined }) {
  const t = parseTime(iso);
  const now = useTicks((at) => relativeTick(t === null ? null : at - t));
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={formatAbsolute(iso)}>
      {formatRelative(iso, now)}
    </time>
  );
}

export function Card(props: { title?: ComponentChildren; actions?: ComponentChildren; children: ComponentChildren; class?: string; id?: string }) {
  return (
    <section class={`card ${props.class ?? ""}`} id={props.id} aria-label={typeof props.title === "string" ? props.title : undefined}>
      {(props.title || props.actions) && (
        <header class="card-head">
          {props.title && <h2>{props.title}</h2>}
          {props.actions && <div class="card-actions">{props.actions}</div>}
        </header>
      )}
      {props.children}
    </section>
  );
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div class="error-note" role="alert">
      {message}
    </div>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <div class="empty">{children}</div>;
}

export function Spinner({ label = "Loading…" }: { label?: string }) {
  return (
    <div class="loading" role="status">
      <span class="spinner" aria-hidden="true" /> {label}
    </div>
  );
}

/**
 * A confirmation as a modal <dialog> (focus is trapped, Esc cancels). `onConfirm` may be
 * async: the dialog stays, busy, until it settles, and shows its error if it fails.
 */
export function Confirm(props: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm();
      props.onClose();
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return (
    <dialog ref={ref} class="dialog" onClose={props.onClose} aria-labelledby="dialog-title">
      <h2 id="dialog-title">{props.title}</h2>
      <div class="dialog-body">{props.children}</div>
      <ErrorNote error={error} />
      <div class="dialog-actions">
        <button type="button" class="btn" onClick={() => ref.current?.close()} disabled={busy}>
          Cancel
        </button>
        <button type="button" class={`btn ${props.danger ? "btn-danger" : "btn-primary"}`} onClick={() => void confirm()} disabled={busy} autofocus>
          {busy ? "Working…" : props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function Tags({ tags }: { tags: readonly string[] | undefined }) {
  if (!tags?.length) return <span class="muted">—</span>;
  return (
    <span class="tags">
      {tags.map((t) => (
        <span class="tag" key={t}>
          {t}
        </span>
      ))}
    </span>
  );
}
