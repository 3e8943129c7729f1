import type { Session, SessionsEvent } from "@pivot/client";
import { describe, expect, it } from "vitest";

import {
  allTags,
  applyEvents,
  filterSessions,
  filtersFromQuery,
  initialList,
  noFilters,
  paginate,
  queryOfFilters,
  sortedSessions,
} from "../src/lib/sessionList";

function session(id: string, over: Partial<Session> = {}): Session {
  return {
    session_id: id,
    session_name: null,
    status: "created",
    config: { epochs: 3 },
    tags: [],
    created_at: "2025-12-19T10:00:00Z",
    started_at: null,
    stopped_at: null,
    completed_at: null,
    current_epoch: 0,
    total_epochs: 3,
    progress: 0,
    latest_metrics: {},
    message: null,
    ...over,
  } as Session;
}

const put = (s: Session): SessionsEvent => ({ type: "session", session: s });

describe("applyEvents", () => {
  it("builds the table from a snapshot, then ready", () => {
    const state = applyEvents(initialList(), [put(session("a")), put(session("b")), { type: "ready", count: 2 }]);
    expect([...state.byId.keys()]).toEqual(["a", "b"]);
    expect(state.ready).toBe(true);
  });

  it("replaces a session with its newer state and drops a deleted one", () => {
    let state = applyEvents(initialList(), [put(session("a")), put(session("b")), { type: "ready", count: 2 }]);
    state = applyEvents(state, [put(session("a", { status: "running" })), { type: "deleted", session_id: "b" }]);
    expect(state.byId.get("a")!.status).toBe("running");
    expect(state.byId.has("b")).toBe(false);
  });

  it("drops everything on reset and is not ready until the new snapshot ends", () => {
    let state = applyEvents(initialList(), [put(session("gone")), { type: "ready", count: 1 }]);
    state = applyEvents(state, [{ type: "reset" }, put(session("kept"))]);
    expect([...state.byId.keys()]).toEqual(["kept"]);
    expect(state.ready).toBe(false);
    state = applyEvents(state, [{ type: "ready", count: 1 }]);
    expect(state.ready).toBe(true);
  });

  it("changes nothing for no events, and never mutates the state it was given", () => {
    const before = applyEvents(initialList(), [put(session("a"))]);
    expect(applyEvents(before, [])).toBe(before);
    applyEvents(before, [{ type: "deleted", session_id: "a" }, put(session("c"))]);
    expect([...before.byId.keys()]).toEqual(["a"]);
  });

  it("ignores the deletion of a session it never had", () => {
    const state = applyEvents(initialList(), [{ type: "deleted", session_id: "x" }]);
    expect(state.byId.size).toBe(0);
  });
});

describe("sorting, filtering and paging", () => {
  const list = [
    session("sess-old", { created_at: "2025-12-18T10:00:00Z", session_name: "baseline", tags: ["unet"], status: "completed" }),
    session("sess-new", { created_at: "2025-12-19T10:00:00Z", session_name: "focal run", tags: ["unet", "focal"], status: "running" }),
    session("sess-mid", { created_at: "2025-12-18T20:00:00Z", tags: ["dice"], status: "failed" }),
  ];
  const state = applyEvents(initialList(), list.map(put));

  it("lists newest first", () => {
    expect(sortedSessions(state).map((s) => s.session_id)).toEqual(["sess-new", "sess-mid", "sess-old"]);
  });

  it("filters by status, tag and text in name, id or tag", () => {
    const sorted = sortedSessions(state);
    expect(filterSessions(sorted, { ...noFilters, status: "running" }).map((s) => s.session_id)).toEqual(["sess-new"]);
    expect(filterSessions(sorted, { ...noFilters, tag: "unet" }).map((s) => s.session_id)).toEqual(["sess-new", "sess-old"]);
    expect(filterSessions(sorted, { ...noFilters, q: "BASE" }).map((s) => s.session_id)).toEqual(["sess-old"]);
    expect(filterSessions(sorted, { ...noFilters, q: "mid" }).map((s) => s.session_id)).toEqual(["sess-mid"]);
    expect(filterSessions(sorted, { ...noFilters, q: "dice" }).map((s) => s.session_id)).toEqual(["sess-mid"]);
    expect(filterSessions(sorted, { status: "running", tag: "dice", q: "" })).toEqual([]);
    expect(allTags(sorted)).toEqual(["dice", "focal", "unet"]);
  });

  it("pages, clamping a page past the end", () => {
    const items = Array.from({ length: 53 }, (_, i) => i);
    expect(paginate(items, 1, 25)).toMatchObject({ page: 1, pages: 3, from: 1, to: 25, total: 53 });
    expect(paginate(items, 3, 25)).toMatchObject({ items: [50, 51, 52], from: 51, to: 53 });
    expect(paginate(items, 9, 25).page).toBe(3);
    expect(paginate([], 2, 25)).toMatchObject({ page: 1, pages: 1, from: 0, to: 0, total: 0 });
  });

  it("round-trips filters and page through the URL", () => {
    const filters = { status: "running", tag: "unet", q: "focal run" };
    const query = queryOfFilters(filters, 2);
    expect(query).toBe("?status=running&tag=unet&q=focal+run&page=2");
    expect(filtersFromQuery(new URLSearchParams(query))).toEqual({ filters, page: 2 });
    expect(queryOfFilters(noFilters, 1)).toBe("");
  });
});
