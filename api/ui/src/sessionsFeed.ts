// The live session list, shared by the pages that show it: one /sse/sessions connection while
// any of them is mounted (kept a little after, so going back and forth does not reconnect),
// resumed with Last-Event-ID so a reconnect brings only what changed.
import { AuthenticationError, type EventStream, type SessionsEvent } from "@pivot/client";
import { useEffect } from "preact/hooks";

import { auth, client, trackStream } from "./api";
import { applyEvents, initialList, type ListState } from "./lib/sessionList";
import { createStore, useStore } from "./lib/store";

export const sessionsList = createStore<ListState>(initialList());
export const feedError = createStore<string | null>(null);

let stream: EventStream | undefined;
let tracker: ReturnType<typeof trackStream> | undefined;
let users = 0;
let closeTimer: ReturnType<typeof setTimeout> | undefined;
let queue: SessionsEvent[] = [];
let flushTimer: ReturnType<typeof setTimeout> | undefined;

function flush(): void {
  flushTimer = undefined;
  const events = queue;
  queue = [];
  sessionsList.set((state) => applyEvents(state, events));
}

function open(): void {
  tracker = trackStream();
  const t = tracker;
  feedError.set(null);
  stream = client.watchSessions(
    (event) => {
      queue.push(event);
      // A snapshot arrives as a burst: apply it as one batch, one render.
      flushTimer ??= setTimeout(flush, 30);
    },
    {
      lastEventId: lastId,
      onState: t.onState,
      onError: (error) => {
        t.done();
        stream = undefined;
        feedError.set(error.message);
        if (error instanceof AuthenticationError) auth.set({ state: "prompt", error: "Your key is no longer accepted." });
      },
    },
  );
}

let lastId: string | undefined;

function close(): void {
  lastId = stream?.lastEventId ?? lastId;
  stream?.close();
  stream = undefined;
  tracker?.done();
}

/** The live list; opens the stream while the calling component is mounted. */
export function useSessionsFeed(): ListState {
  useEffect(() => {
    users++;
    clearTimeout(closeTimer);
    if (!stream) open();
    return () => {
      users--;
      if (users === 0) closeTimer = setTimeout(close, 15_000);
    };
  }, []);
  return useStore(sessionsList);
}

// Another key may see other sessions: start over.
auth.subscribe((a) => {
  if (a.state === "in") return;
  close();
  lastId = undefined;
  sessionsList.set(initialList());
});
