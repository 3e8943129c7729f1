// The notification bell: the unread count (polled), a panel to read them, mark one read, or
// clear them all.
import type { Notification } from "@pivot/client";
import { useEffect, useRef, useState } from "preact/hooks";

import { call, canWrite } from "../api";
import { href } from "../router";
import { ErrorNote, RelTime, usePoll } from "./ui";

export function Bell() {
  const [open, setOpen] = useState(false);
  const [items, setItems] = useState<Notification[]>([]);
  const [unread, setUnread] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const panel = useRef<HTMLDivElement>(null);

  const load = async () => {
    const list = await call((c) => c.notificationList({ limit: 30 }));
    setItems(list.notifications);
    setUnread(list.unread_count);
  };
  usePoll(load, open ? 3000 : 10_000, [open]);

  useEffect(() => {
    if (!open) return;
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && setOpen(false);
    const onClick = (e: MouseEvent) => {
      if (!panel.current?.parentElement?.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener("keydown", onKey);
    document.addEventListener("click", onClick);
    return () => {
      document.removeEventListener("keydown", onKey);
      document.removeEventListener("click", onClick);
    };
  }, [open]);

  const markRead = async (n: Notification) => {
    if (n.read || !canWrite()) return;
    try {
      await call((c) => c.markNotificationRead(n.id));
      await load();
    } catch (e) {
      setError(e);
    }
  };
  const clear = async () => {
    try {
      await call((c) => c.clearNotifications());
      await load();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <div class="bell-wrap">
      <button
        class="btn btn-ghost bell"
        aria-label={`Notifications: ${unread} unread`}
        aria-expanded={open}
        aria-haspopup="true"
        onClick={() => setOpen(!open)}
        data-testid="bell"
      >
        <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
          <path
            fill="currentColor"
            d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"
          />
        </svg>
        {unread > 0 && (
          <span class="bell-count" data-testid="bell-count">
            {unread > 99 ? "99+" : unread}
          </span>
        )}
      </button>
      {open && (
        <div class="bell-panel card" ref={panel} role="dialog" aria-label="Notifications">
          <header class="card-head">
            <h2>Notifications</h2>
            {canWrite() && items.length > 0 && (
              <button class="btn btn-sm" onClick={() => void clear()}>
                Clear all
              </button>
            )}
          </header>
          <ErrorNote error={error} />
          {items.length === 0 ? (
            <div class="empty small">Nothing new.</div>
          ) : (
            <ul class="notes">
              {items.map((n) => {
                const sessionId = typeof n.data?.session_id === "string" ? n.data.session_id : null;
                return (
                  <li
                    key={n.id}
                    class={n.read ? "read" : "unread"}
                    data-notification-id={n.id}
                    data-rule-id={typeof n.data?.rule_id === "string" ? n.data.rule_id : undefined}
                  >
                    <span class={`dot prio-${n.priority}`} aria-hidden="true" />
                    <div class="note-body">
                      <div>
                        {sessionId ? <a href={href(`/sessions/${encodeURIComponent(sessionId)}`)}>{n.message}</a> : n.message}
                      </div>
                      <div class="subtle small">
                        {n.type} · <RelTime iso={n.created_at} />
                      </div>
                    </div>
                    {!n.read && canWrite() && (
                      <button class="btn btn-sm btn-ghost" onClick={() => void markRead(n)} aria-label="Mark read">
                        Mark read
                      </button>
                    )}
                  </li>
                );
              })}
            </ul>
          )}
          <footer class="bell-foot">
            <a href={href("/alerts")} onClick={() => setOpen(false)}>
              Alerts →
            </a>
          </footer>
        </div>
      )}
    </div>
  );
}
