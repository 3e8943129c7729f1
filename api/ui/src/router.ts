// Client-side routes under /ui/ with the history API: every view has a URL that can be shared
// and reloaded (the API answers index.html for any /ui/ path).
import { useEffect, useState } from "preact/hooks";

export const BASE = "/ui";

export interface Location {
  /** The path below /ui, e.g. "/sessions/sess-abc" ("/" for the sessions page). */
  path: string;
  query: URLSearchParams;
}

function current(): Location {
  let path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : location.pathname;
  if (!path.startsWith("/")) path = `/${path}`;
  return { path, query: new URLSearchParams(location.search) };
}

const listeners = new Set<() => void>();

function notify(): void {
  for (const listener of [...listeners]) listener();
}

window.addEventListener("popstate", notify);

/** The URL of a route: href("/sessions/x") → "/ui/sessions/x". */
export const href = (path: string) => `${BASE}${path === "/" ? "/" : path}`;

export function navigate(path: string, options: { replace?: boolean } = {}): void {
  const url = href(path);
  if (url === location.pathname + location.search) return;
  if (options.replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  notify();
  if (!options.replace) window.scrollTo(0, 0);
}

export function useLocation(): Location {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const listener = () => setLoc(current());
    listeners.add(listener);
    return () => void listeners.delete(listener);
  }, []);
  return loc;
}

// Plain <a href="/ui/..."> links navigate without a page load (modifier keys still open tabs).
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = (event.target as Element | null)?.closest?.("a");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(`${BASE}/`) && url.pathname !== BASE) return;
  event.preventDefault();
  navigate((url.pathname.slice(BASE.length) || "/") + url.search);
});

/** Match "/sessions/:id" against a path; the params, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split("/").filter(Boolean);
  const s = path.split("/").filter(Boolean);
  if (p.length !== s.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i]!.startsWith(":")) params[p[i]!.slice(1)] = decodeURIComponent(s[i]!);
    else if (p[i] !== s[i]) return null;
  }
  return params;
}
