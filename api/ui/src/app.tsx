// The shell: sign-in, the header with its nav and notification bell, the connection banner,
// and the route's page.
import { useState } from "preact/hooks";

import { auth, connectionLost, signIn, signOut } from "./api";
import { Bell } from "./components/Bell";
import { Spinner } from "./components/ui";
import { useStore } from "./lib/store";
import { AlertsPage } from "./pages/Alerts";
import { ComparePage } from "./pages/Compare";
import { NewSessionPage } from "./pages/NewSession";
import { ResourcesPage } from "./pages/Resources";
import { SessionPage } from "./pages/Session";
import { SessionsPage } from "./pages/Sessions";
import { href, match, useLocation } from "./router";

const NAV = [
  { path: "/", label: "Sessions", active: (p: string) => p === "/" || p.startsWith("/sessions") },
  { path: "/compare", label: "Compare", active: (p: string) => p.startsWith("/compare") },
  { path: "/alerts", label: "Alerts", active: (p: string) => p.startsWith("/alerts") },
  { path: "/resources", label: "Resources", active: (p: string) => p.startsWith("/resources") },
];

export function App() {
  const a = useStore(auth);
  if (a.state === "checking") return <Spinner label="Connecting to PIVOT…" />;
  if (a.state === "prompt") return <KeyPrompt error={a.error} />;
  return <Shell />;
}

function Shell() {
  const { path } = useLocation();
  const a = auth.get();
  const lost = useStore(connectionLost);
  const me = a.state === "in" ? a.me : null;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href={href("/")} aria-label="PIVOT home">
          <span class="logo" aria-hidden="true">
            P
          </span>
          PIVOT
        </a>
        <nav class="nav" aria-label="Main">
          {NAV.map((n) => (
            <a key={n.path} href={href(n.path)} class={n.active(path) ? "active" : ""} aria-current={n.active(path) ? "page" : undefined}>
              {n.label}
            </a>
          ))}
        </nav>
        <div class="topbar-right">
          <Bell />
          {me && (
            <span class="who" title={me.auth_enabled ? `Signed in as ${me.name ?? "key"} (${me.scope})` : "Authentication is off"} data-testid="who">
              <span class="who-name">{me.auth_enabled ? (me.name ?? "key") : "no auth"}</span>
              <span class={`scope scope-${me.scope}`}>{me.scope}</span>
            </span>
          )}
          {me?.auth_enabled && (
            <button class="btn btn-ghost btn-sm" onClick={signOut}>
              Sign out
            </button>
          )}
        </div>
      </header>
      {lost && (
        <div class="banner" role="status" data-testid="connection-banner">
          <span class="spinner" aria-hidden="true" /> Connection to the API lost — reconnecting. Live views resume where they left off.
        </div>
      )}
      <main id="main" tabIndex={-1}>
        <Route path={path} />
      </main>
    </>
  );
}

function Route({ path }: { path: string }) {
  if (path === "/" || path === "") return <SessionsPage />;
  const session = match("/sessions/:id", path);
  if (session) return <SessionPage key={session.id} id={session.id!} />;
  if (path === "/compare") return <ComparePage />;
  if (path === "/alerts") return <AlertsPage />;
  if (path === "/resources") return <ResourcesPage />;
  if (path === "/new") return <NewSessionPage />;
  return (
    <div class="page">
      <h1>Not found</h1>
      <p>
        Nothing lives at this address. <a href={href("/")}>Back to the sessions</a>
      </p>
    </div>
  );
}

function KeyPrompt({ error }: { error?: string }) {
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!key.trim()) return;
    setBusy(true);
    await signIn(key.trim());
    setBusy(false);
  };
  return (
    <div class="signin">
      <form class="card signin-card" onSubmit={(e) => void submit(e)}>
        <div class="brand brand-lg">
          <span class="logo" aria-hidden="true">
            P
          </span>
          PIVOT
        </div>
        <h1>Sign in</h1>
        <p class="subtle">
          Paste an API key. <code>pivot up</code> prints one, and a link that signs you in directly.
        </p>
        <label class="field">
          <span>API key</span>
          <input
            type="password"
            name="api-key"
            autocomplete="off"
            value={key}
            onInput={(e) => setKey((e.target as HTMLInputElement).value)}
            placeholder="pvt_…"
            autofocus
            required
          />
        </label>
        {error && (
          <div class="error-note" role="alert">
            {error}
          </div>
        )}
        <button class="btn btn-primary btn-block" type="submit" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p class="subtle small">The key is kept in this tab only (sessionStorage).</p>
      </form>
    </div>
  );
}
