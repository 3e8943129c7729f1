// Alerts (active, acknowledged, resolved) with acknowledge and resolve; the rules that raise
// them: list, create, enable/disable, delete.
import type { Alert, AlertRule, AlertRuleRequest } from "@pivot/client";
import { APIStatusError } from "@pivot/client";
import { useState } from "preact/hooks";

import { auth, call, canWrite } from "../api";
import { Card, Confirm, Empty, ErrorNote, RelTime, SeverityBadge, usePoll } from "../components/ui";
import { fieldErrors, type FieldError } from "../lib/config";
import { formatNumber } from "../lib/format";
import { href, navigate, useLocation } from "../router";

const STATUSES = ["active", "acknowledged", "resolved"] as const;
const METRICS: AlertRuleRequest["metric"][] = [
  "val_loss",
  "train_loss",
  "val_accuracy",
  "train_accuracy",
  "val_dice",
  "val_froc",
  "learning_rate",
  "cpu_percent",
  "memory_percent",
  "disk_percent",
  "gpu_utilization",
  "gpu_memory_percent",
  "gpu_temperature",
];
const CONDITIONS: AlertRuleRequest["condition"][] = ["greater_than", "less_than", "equals", "not_equals", "is_nan", "no_improvement_for", "stalled"];
const SEVERITIES: AlertRuleRequest["severity"][] = ["low", "medium", "high", "critical"];

export function AlertsPage() {
  const { query } = useLocation();
  const status = (query.get("status") ?? "active") as (typeof STATUSES)[number] | "all";
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [rules, setRules] = useState<AlertRule[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [acting, setActing] = useState<{ alert: Alert; kind: "acknowledge" | "resolve" } | null>(null);
  const [deleting, setDeleting] = useState<AlertRule | null>(null);
  const writable = canWrite();

  const load = async () => {
    try {
      const [a, r] = await Promise.all([
        call((c) => c.listAlerts(status === "all" ? { limit: 200 } : { status, limit: 200 })),
        call((c) => c.listAlertRules()),
      ]);
      setAlerts(a);
      setRules(r);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  usePoll(load, 4000, [status]);

  const toggle = async (rule: AlertRule) => {
    try {
      await call((c) => c.updateAlertRule(rule.rule_id, { enabled: !rule.enabled }));
      await load();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Alerts</h1>
          <p class="subtle">Raised by the rules below, on system resources or on training metrics.</p>
        </div>
      </div>
      <ErrorNote error={error} />
      <Card
        title="Alerts"
        actions={
          <div class="tabs" role="tablist" aria-label="Alert status">
            {[...STATUSES, "all" as const].map((s) => (
              <button
                key={s}
                role="tab"
                aria-selected={status === s}
                class={`tab ${status === s ? "active" : ""}`}
                onClick={() => navigate(`/alerts${s === "active" ? "" : `?status=${s}`}`, { replace: true })}
              >
                {s}
              </button>
            ))}
          </div>
        }
      >
        {alerts === null ? null : alerts.length === 0 ? (
          <Empty>No {status === "all" ? "" : status} alerts.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="table" data-testid="alerts-table">
              <thead>
                <tr>
                  <th>Severity</th>
                  <th>Rule</th>
                  <th>Message</th>
                  <th>Subject</th>
                  <th class="num">Value</th>
                  <th>Triggered</th>
                  <th>Status</th>
                  <th class="actions-col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {alerts.map((a) => (
                  <tr key={a.alert_id} data-alert-id={a.alert_id} data-rule-id={a.rule_id}>
                    <td>
                      <SeverityBadge severity={a.severity} />
                    </td>
                    <td>{a.rule_name}</td>
                    <td class="wrap">{a.message}</td>
                    <td class="mono small">
                      {a.session_id ? <a href={href(`/sessions/${encodeURIComponent(a.session_id)}`)}>{a.session_id}</a> : a.subject}
                    </td>
                    <td class="num mono">
                      {formatNumber(a.value)}
                      {a.threshold !== null && a.threshold !== undefined && <span class="subtle"> / {formatNumber(a.threshold)}</span>}
                    </td>
                    <td class="nowrap">
                      <RelTime iso={a.triggered_at} />
                    </td>
                    <td>
                      <span class={`badge alert-${a.status}`} data-testid="alert-status">
                        {a.status}
                      </span>
                      {a.acknowledged_by && <div class="subtle small">by {a.acknowledged_by}</div>}
                    </td>
                    <td class="actions-col">
                      {writable && a.status === "active" && (
                        <button class="btn btn-sm" onClick={() => setActing({ alert: a, kind: "acknowledge" })}>
                          Acknowledge
                        </button>
                      )}
                      {writable && a.status !== "resolved" && (
                        <button class="btn btn-sm" onClick={() => setActing({ alert: a, kind: "resolve" })}>
                          Resolve
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>

      <Card title="Rules">
        {rules === null ? null : rules.length === 0 ? (
          <Empty>No rules yet.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="table" data-testid="rules-table">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Condition</th>
                  <th>Severity</th>
                  <th>Scope</th>
                  <th>Enabled</th>
                  <th class="actions-col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rules.map((r) => (
                  <tr key={r.rule_id} data-rule-id={r.rule_id} class={r.enabled ? "" : "disabled"}>
                    <td>{r.name}</td>
                    <td class="mono small">{describe(r)}</td>
                    <td>
                      <SeverityBadge severity={r.severity} />
                    </td>
                    <td class="small">{r.session_id ? <span class="mono">{r.session_id}</span> : r.tag ? `tag ${r.tag}` : "all"}</td>
                    <td>
                      <label class="switch">
                        <input type="checkbox" checked={r.enabled} disabled={!writable} onChange={() => void toggle(r)} aria-label={`Rule ${r.name} enabled`} />
                        <span aria-hidden="true" />
                      </label>
                    </td>
                    <td class="actions-col">
                      {writable && (
                        <button class="btn btn-sm btn-danger-ghost" onClick={() => setDeleting(r)}>
                          Delete
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {writable && <RuleForm onCreated={() => void load()} />}
      </Card>

      {acting && (
        <Confirm
          title={acting.kind === "acknowledge" ? "Acknowledge alert" : "Resolve alert"}
          confirmLabel={acting.kind === "acknowledge" ? "Acknowledge" : "Resolve"}
          onConfirm={async () => {
            const notes = (document.getElementById("alert-notes") as HTMLTextAreaElement | null)?.value ?? "";
            const who = whoName();
            if (acting.kind === "acknowledge") await call((c) => c.acknowledgeAlert(acting.alert.alert_id, { acknowledged_by: who, notes }));
            else await call((c) => c.resolveAlert(acting.alert.alert_id, { resolved_by: who, notes }));
            await load();
          }}
          onClose={() => setActing(null)}
        >
          <p>{acting.alert.message}</p>
          <label class="field">
            <span>Notes (optional)</span>
            <textarea id="alert-notes" rows={3} />
          </label>
        </Confirm>
      )}
      {deleting && (
        <Confirm
          title="Delete rule?"
          confirmLabel="Delete"
          danger
          onConfirm={async () => {
            await call((c) => c.deleteAlertRule(deleting.rule_id));
            await load();
          }}
          onClose={() => setDeleting(null)}
        >
          <p>
            The rule <strong>{deleting.name}</strong> stops raising alerts. Its past alerts stay.
          </p>
        </Confirm>
      )}
    </div>
  );
}

function whoName(): string {
  const a = auth.get();
  return a.state === "in" && a.me.name ? a.me.name : "dashboard";
}

function describe(r: AlertRule): string {
  if (r.condition === "no_improvement_for") return `${r.metric} no improvement for ${r.for_epochs} epochs (${r.mode})`;
  if (r.condition === "is_nan") return `${r.metric} is NaN`;
  if (r.condition === "stalled") return `${r.metric} stalled for ${r.window_s}s`;
  const op = { greater_than: ">", less_than: "<", equals: "=", not_equals: "≠" }[r.condition] ?? r.condition;
  return `${r.metric} ${op} ${formatNumber(r.threshold)}`;
}

function RuleForm({ onCreated }: { onCreated: () => void }) {
  const [rule, setRule] = useState<AlertRuleRequest>({ name: "", metric: "val_loss", condition: "greater_than", threshold: 1, severity: "medium" });
  const [scope, setScope] = useState("");
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [busy, setBusy] = useState(false);
  const needsThreshold = !["is_nan", "no_improvement_for", "stalled"].includes(rule.condition);
  const set = (patch: Partial<AlertRuleRequest>) => setRule((r) => ({ ...r, ...patch }));

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setErrors([]);
    const body: AlertRuleRequest = { ...rule };
    if (!needsThreshold && rule.condition !== "no_improvement_for") delete body.threshold;
    if (scope.startsWith("sess")) body.session_id = scope;
    else if (scope) body.tag = scope;
    try {
      await call((c) => c.createAlertRule(body));
      setRule((r) => ({ ...r, name: "" }));
      onCreated();
    } catch (err) {
      if (err instanceof APIStatusError) setErrors(fieldErrors({ message: err.message, details: err.details }));
      else setErrors([{ field: "", message: (err as Error).message }]);
    } finally {
      setBusy(false);
    }
  };
  const errorFor = (f: string) => errors.filter((e) => e.field === f).map((e) => e.message).join("; ");

  return (
    <form class="rule-form" onSubmit={(e) => void submit(e)} data-testid="rule-form" noValidate>
      <h3>New rule</h3>
      <div class="form-row">
        <label class="field">
          <span>Name</span>
          <input value={rule.name} onInput={(e) => set({ name: (e.target as HTMLInputElement).value })} required name="rule-name" placeholder="val_loss_high" />
          {errorFor("name") && <span class="field-error">{errorFor("name")}</span>}
        </label>
        <label class="field">
          <span>Metric</span>
          <select value={rule.metric} onChange={(e) => set({ metric: (e.target as HTMLSelectElement).value as AlertRuleRequest["metric"] })} name="rule-metric">
            {METRICS.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        <label class="field">
          <span>Condition</span>
          <select value={rule.condition} onChange={(e) => set({ condition: (e.target as HTMLSelectElement).value as AlertRuleRequest["condition"] })} name="rule-condition">
            {CONDITIONS.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        </label>
        {needsThreshold && (
          <label class="field small-field">
            <span>Threshold</span>
            <input type="number" step="any" value={rule.threshold ?? ""} onInput={(e) => set({ threshold: Number((e.target as HTMLInputElement).value) })} name="rule-threshold" />
            {errorFor("threshold") && <span class="field-error">{errorFor("threshold")}</span>}
          </label>
        )}
        <label class="field">
          <span>Severity</span>
          <select value={rule.severity} onChange={(e) => set({ severity: (e.target as HTMLSelectElement).value as AlertRuleRequest["severity"] })} name="rule-severity">
            {SEVERITIES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label class="field">
          <span>Session id or tag</span>
          <input value={scope} onInput={(e) => setScope((e.target as HTMLInputElement).value.trim())} placeholder="all sessions" name="rule-scope" />
          {(errorFor("session_id") || errorFor("tag")) && <span class="field-error">{errorFor("session_id") || errorFor("tag")}</span>}
        </label>
        <button class="btn btn-primary" type="submit" disabled={busy || !rule.name.trim()}>
          Add rule
        </button>
      </div>
      {errors.filter((e) => !["name", "threshold", "session_id", "tag"].includes(e.field)).map((e, i) => (
        <div class="field-error" key={i} role="alert">
          {e.field ? `${e.field}: ` : ""}
          {e.message}
        </div>
      ))}
    </form>
  );
}
