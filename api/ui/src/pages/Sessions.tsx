// The sessions table: live from /sse/sessions (no list call), filtered, paged; filters and
// page live in the URL so a view can be shared.
import type { Session } from "@pivot/client";
import { useMemo, useState } from "preact/hooks";

import { canWrite } from "../api";
import { Card, Empty, Progress, RelTime, Spinner, StatusBadge, Tags, Ticking } from "../components/ui";
import { durationTick, formatDuration, formatNumber } from "../lib/format";
import { durationMs, bestMetric, isFinal } from "../lib/session";
import {
  allTags,
  filterSessions,
  filtersFromQuery,
  paginate,
  queryOfFilters,
  sortedSessions,
  type Filters,
} from "../lib/sessionList";
import { href, navigate, useLocation } from "../router";
import { feedError, useSessionsFeed } from "../sessionsFeed";
import { useStore } from "../lib/store";

const PAGE_SIZE = 25;
const STATUSES = ["created", "pending", "running", "completed", "stopped", "failed"];

export function SessionsPage() {
  const list = useSessionsFeed();
  const error = useStore(feedError);
  const { query } = useLocation();
  const { filters, page } = filtersFromQuery(query);
  const [selected, setSelected] = useState<string[]>([]);

  const sorted = useMemo(() => sortedSessions(list), [list]);
  const tags = useMemo(() => allTags(sorted), [sorted]);
  const filtered = useMemo(() => filterSessions(sorted, filters), [sorted, filters.status, filters.tag, filters.q]);
  const shown = paginate(filtered, page, PAGE_SIZE);
  const counts = useMemo(() => {
    const c: Record<string, number> = {};
    for (const s of sorted) c[s.status] = (c[s.status] ?? 0) + 1;
    return c;
  }, [sorted]);

  const setFilters = (next: Partial<Filters>, nextPage = 1) =>
    navigate(`/${queryOfFilters({ ...filters, ...next }, nextPage)}`, { replace: true });

  const toggle = (id: string) =>
    setSelected((sel) => (sel.includes(id) ? sel.filter((s) => s !== id) : sel.length >= 10 ? sel : [...sel, id]));

  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Training sessions</h1>
          <p class="subtle">
            {list.ready ? `${sorted.length} sessions` : "Loading…"}
            {counts.running ? ` · ${counts.running} running` : ""}
            <span class="live-dot" title="Live: updates as they happen" aria-hidden="true" />
          </p>
        </div>
        <div class="page-actions">
          {selected.length >= 2 && (
            <a class="btn" href={href(`/compare?ids=${selected.map(encodeURIComponent).join(",")}`)}>
              Compare {selected.length}
            </a>
          )}
          {canWrite() && (
            <a class="btn btn-primary" href={href("/new")} data-testid="new-session">
              New session
            </a>
          )}
        </div>
      </div>

      <Card>
        <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
          <label class="field grow">
            <span class="sr-only">Search</span>
            <input
              type="search"
              placeholder="Search name, id or tag…"
              value={filters.q}
              onInput={(e) => setFilters({ q: (e.target as HTMLInputElement).value })}
              aria-label="Search sessions"
            />
          </label>
          <label class="field">
            <span class="sr-only">Status</span>
            <select value={filters.status} onChange={(e) => setFilters({ status: (e.target as HTMLSelectElement).value })} aria-label="Filter by status">
              <option value="">All statuses</option>
              {STATUSES.map((s) => (
                <option value={s} key={s}>
                  {s} {counts[s] ? `(${counts[s]})` : ""}
                </option>
              ))}
            </select>
          </label>
          <label class="field">
            <span class="sr-only">Tag</span>
            <select value={filters.tag} onChange={(e) => setFilters({ tag: (e.target as HTMLSelectElement).value })} aria-label="Filter by tag">
              <option value="">All tags</option>
              {tags.map((t) => (
                <option value={t} key={t}>
                  {t}
                </option>
              ))}
            </select>
          </label>
        </form>

        {error && <div class="error-note" role="alert">Live list: {error}</div>}
        {!list.ready && sorted.length === 0 ? (
          <Spinner label="Loading sessions…" />
        ) : filtered.length === 0 ? (
          <Empty>
            {sorted.length === 0 ? (
              <>
                No sessions yet.{" "}
                {canWrite() && <a href={href("/new")}>Create the first one</a>}
              </>
            ) : (
              "No session matches these filters."
            )}
          </Empty>
        ) : (
          <div class="table-wrap">
            <table class="table sessions-table" data-testid="sessions-table">
              <thead>
                <tr>
                  <th class="check-col">
                    <span class="sr-only">Select to compare</span>
                  </th>
                  <th>Name</th>
                  <th>Status</th>
                  <th class="progress-col">Progress</th>
                  <th class="num">Epoch</th>
                  <th class="num">val_loss</th>
                  <th class="num">Best metric</th>
                  <th>Tags</th>
                  <th>Created</th>
                  <th class="num">Duration</th>
                </tr>
              </thead>
              <tbody>
                {shown.items.map((s) => (
                  <SessionRow key={s.session_id} s={s} selected={selected.includes(s.session_id)} onToggle={toggle} />
                ))}
              </tbody>
            </table>
          </div>
        )}
        {filtered.length > PAGE_SIZE && (
          <nav class="pager" aria-label="Pages">
            <span class="subtle">
              {shown.from}–{shown.to} of {shown.total}
            </span>
            <button class="btn btn-sm" disabled={shown.page <= 1} onClick={() => setFilters({}, shown.page - 1)}>
              ← Previous
            </button>
            <span class="subtle">
              Page {shown.page} of {shown.pages}
            </span>
            <button class="btn btn-sm" disabled={shown.page >= shown.pages} onClick={() => setFilters({}, shown.page + 1)}>
              Next →
            </button>
          </nav>
        )}
      </Card>
    </div>
  );
}

function SessionRow({ s, selected, onToggle }: { s: Session; selected: boolean; onToggle: (id: string) => void }) {
  const best = bestMetric(s);
  const valLoss = s.latest_metrics?.val_loss;
  return (
    <tr data-session-id={s.session_id}>
      <td class="check-col">
        <input type="checkbox" checked={selected} onChange={() => onToggle(s.session_id)} aria-label={`Select ${s.session_name ?? s.session_id} to compare`} />
      </td>
      <td class="name-cell">
        <a href={href(`/sessions/${encodeURIComponent(s.session_id)}`)}>{s.session_name || s.session_id}</a>
        {s.session_name && <div class="mono subtle small">{s.session_id}</div>}
      </td>
      <td>
        <StatusBadge status={s.status} />
      </td>
      <td class="progress-col">
        <Progress value={s.progress ?? 0} status={s.status} />
      </td>
      <td class="num">
        {s.current_epoch ?? 0}/{s.total_epochs}
      </td>
      <td class="num mono">{formatNumber(valLoss)}</td>
      <td class="num mono" title={best ? best.name : undefined}>
        {best ? (
          <>
            <span class="subtle small">{best.name} </span>
            {formatNumber(best.value)}
          </>
        ) : (
          <span class="muted">—</span>
        )}
      </td>
      <td>
        <Tags tags={s.tags} />
      </td>
      <td class="nowrap">
        <RelTime iso={s.created_at} />
      </td>
      <td class="num nowrap">
        {isFinal(s.status) || !s.started_at ? (
          formatDuration(durationMs(s, Date.now()))
        ) : (
          <Ticking every={(now) => durationTick(durationMs(s, now))}>{(now) => formatDuration(durationMs(s, now))}</Ticking>
        )}
      </td>
    </tr>
  );
}
