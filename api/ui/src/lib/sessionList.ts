// The sessions page's state, kept by the events of /sse/sessions: a snapshot (then `ready`),
// then each change. A batch of events makes one new state, so a 1000-session snapshot is one
// render, not a thousand.
import type { Session, SessionsEvent } from "@pivot/client";

import { parseTime } from "./format";

export interface ListState {
  byId: ReadonlyMap<string, Session>;
  /** The snapshot (or the replay after a reconnect) has been received. */
  ready: boolean;
}

export const initialList = (): ListState => ({ byId: new Map(), ready: false });

export function applyEvents(state: ListState, events: readonly SessionsEvent[]): ListState {
  if (events.length === 0) return state;
  let byId: Map<string, Session> | undefined;
  let ready = state.ready;
  const writable = () => (byId ??= new Map(state.byId));
  for (const event of events) {
    switch (event.type) {
      case "session":
        writable().set(event.session.session_id, event.session);
        break;
      case "deleted":
        writable().delete(event.session_id);
        break;
      case "reset":
        // The server cannot replay what we missed: what we hold may be stale; a snapshot follows.
        byId = new Map();
        ready = false;
        break;
      case "ready":
        ready = true;
        break;
    }
  }
  return { byId: byId ?? state.byId, ready };
}

/** Newest first (created_at, then id for a stable order). */
export function sortedSessions(state: ListState): Session[] {
  const list = [...state.byId.values()];
  const key = (s: Session) => parseTime(s.created_at) ?? 0;
  return list.sort((a, b) => key(b) - key(a) || (a.session_id < b.session_id ? 1 : -1));
}

export interface Filters {
  status: string; // "" = any
  tag: string; // "" = any
  q: string; // in name or id, case-insensitive
}

export const noFilters: Filters = { status: "", tag: "", q: "" };

export function filterSessions(list: readonly Session[], f: Filters): Session[] {
  const q = f.q.trim().toLowerCase();
  return list.filter(
    (s) =>
      (!f.status || s.status === f.status) &&
      (!f.tag || (s.tags ?? []).includes(f.tag)) &&
      (!q || s.session_id.toLowerCase().includes(q) || (s.session_name ?? "").toLowerCase().includes(q) ||
        (s.tags ?? []).some((t) => t.toLowerCase().includes(q))),
  );
}

export function allTags(list: readonly Session[]): string[] {
  return [...new Set(list.flatMap((s) => s.tags ?? []))].sort();
}

export interface Page<T> {
  items: T[];
  page: number; // 1-based, clamped to what exists
  pages: number;
  from: number; // 1-based index of the first item shown, 0 when none
  to: number;
  total: number;
}

export function paginate<T>(list: readonly T[], page: number, size: number): Page<T> {
  const pages = Math.max(1, Math.ceil(list.length / size));
  const p = Math.min(Math.max(1, Math.floor(page) || 1), pages);
  const start = (p - 1) * size;
  const items = list.slice(start, start + size);
  return { items, page: p, pages, from: items.length ? start + 1 : 0, to: start + items.length, total: list.length };
}

/** Filters and page from the address bar's query (so a filtered view can be shared). */
export function filtersFromQuery(query: URLSearchParams): { filters: Filters; page: number } {
  return {
    filters: { status: query.get("status") ?? "", tag: query.get("tag") ?? "", q: query.get("q") ?? "" },
    page: Number(query.get("page") ?? 1) || 1,
  };
}

export function queryOfFilters(filters: Filters, page: number): string {
  const q = new URLSearchParams();
  if (filters.status) q.set("status", filters.status);
  if (filters.tag) q.set("tag", filters.tag);
  if (filters.q) q.set("q", filters.q);
  if (page > 1) q.set("page", String(page));
  const text = q.toString();
  return text ? `?${text}` : "";
}
