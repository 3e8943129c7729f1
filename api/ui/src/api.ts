// The one client the pages use (same origin: the API serves the UI), who is signed in, and
// whether the API can be reached (the banner).
import { APIConnectionError, AuthenticationError, PIVOTClient, type LiveState, type WhoAmI } from "@pivot/client";

import { createStore } from "./lib/store";

const KEY = "pivot.apiKey";

export type Auth =
  | { state: "checking" }
  | { state: "prompt"; error?: string }
  | { state: "in"; me: WhoAmI };

export const auth = createStore<Auth>({ state: "checking" });

function makeClient(key: string | undefined): PIVOTClient {
  // One retry: a page should show a failure (and the banner) soon rather than hang.
  return new PIVOTClient({ baseUrl: location.origin, apiKey: key, maxRetries: 1, timeoutMs: 20_000 });
}

export let client = makeClient(sessionStorage.getItem(KEY) ?? undefined);

/** Write buttons show only for keys that may write. */
export function canWrite(): boolean {
  const a = auth.get();
  return a.state === "in" && a.me.scope !== "read";
}

/**
 * A URL ending in `#key=…` (what `pivot up` prints) signs in: the key goes to sessionStorage
 * and the fragment leaves the address bar (and so the history) at once. A fragment is never
 * sent to a server, so the key reaches no log.
 */
export function takeKeyFromHash(): boolean {
  const match = /^#(?:.*&)?key=([^&]*)/.exec(location.hash);
  if (!match) return false;
  const key = decodeURIComponent(match[1]!).trim();
  if (key) sessionStorage.setItem(KEY, key);
  history.replaceState(history.state, "", location.pathname + location.search);
  return Boolean(key);
}

let attempt = 0;

/** Check a key (or the stored one) with whoami; on success it is the key every page uses. */
export async function signIn(key?: string): Promise<void> {
  const mine = ++attempt; // only the latest attempt may decide (a #key= link can overtake one)
  const tried = key ?? sessionStorage.getItem(KEY) ?? undefined;
  const candidate = makeClient(tried);
  try {
    const me = await candidate.whoami();
    if (mine !== attempt) return;
    if (me.auth_enabled && me.scope == null) {
      // Keys are on and none was sent: whoami says so without a 401 (no console error).
      auth.set({ state: "prompt" });
      return;
    }
    if (key !== undefined) sessionStorage.setItem(KEY, key);
    client = candidate;
    auth.set({ state: "in", me });
    markReachable();
  } catch (error) {
    if (mine !== attempt) return;
    if (error instanceof AuthenticationError) {
      if (tried !== undefined && sessionStorage.getItem(KEY) === tried) sessionStorage.removeItem(KEY);
      auth.set({ state: "prompt", error: tried !== undefined ? "That key was not accepted." : undefined });
    } else if (error instanceof APIConnectionError) {
      markUnreachable();
      auth.set({ state: "prompt", error: "The API cannot be reached. Retrying…" });
      setTimeout(() => mine === attempt && void signIn(key), 3000);
    } else {
      auth.set({ state: "prompt", error: (error as Error).message });
    }
  }
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
  client = makeClient(undefined);
  auth.set({ state: "prompt" });
}

// -- the connection banner -----------------------------------------------------------------

const streams = new Map<number, LiveState>();
let nextStream = 0;
let requestFailed = false;

/** True while a live stream is reconnecting or the last request could not reach the API. */
export const connectionLost = createStore(false);

function update(): void {
  connectionLost.set(requestFailed || [...streams.values()].some((s) => s === "reconnecting"));
}

function markUnreachable(): void {
  requestFailed = true;
  update();
  ensureProbe();
}

function markReachable(): void {
  requestFailed = false;
  update();
}

let probing = false;

// While requests fail, a cheap health check every 2 s tells when the API is back.
function ensureProbe(): void {
  if (probing) return;
  probing = true;
  const probe = async () => {
    try {
      await client.health();
      probing = false;
      markReachable();
    } catch {
      setTimeout(() => void probe(), 2000);
    }
  };
  setTimeout(() => void probe(), 2000);
}

/** A live stream's state reporter, for `onState`; call the returned `done` when it closes. */
export function trackStream(): { onState: (state: LiveState) => void; done: () => void } {
  const id = nextStream++;
  return {
    onState(state) {
      if (state === "closed") streams.delete(id);
      else streams.set(id, state);
      update();
    },
    done() {
      streams.delete(id);
      update();
    },
  };
}

/** Run a request; a connection failure shows the banner (until the API answers again). */
export async function call<T>(request: (c: PIVOTClient) => Promise<T>): Promise<T> {
  try {
    const result = await request(client);
    if (requestFailed) markReachable();
    return result;
  } catch (error) {
    if (error instanceof APIConnectionError) markUnreachable();
    else if (error instanceof AuthenticationError) {
      // The key was revoked (or the API restarted with new keys): ask again.
      sessionStorage.removeItem(KEY);
      auth.set({ state: "prompt", error: "Your key is no longer accepted." });
    }
    throw error;
  }
}
