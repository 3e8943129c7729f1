// Create (and optionally start) a session from a config of the server's configs dir, as is or
// edited in place as YAML. The API's validation errors show next to the field they name.
import { APIStatusError, type ConfigEntry, type CreateSessionRequest } from "@pivot/client";
import { dump, load, YAMLException } from "js-yaml";
import { useEffect, useRef, useState } from "preact/hooks";

import { call, canWrite } from "../api";
import { Card, ErrorNote } from "../components/ui";
import { fieldErrors, yamlLineOf, type FieldError } from "../lib/config";
import { href, navigate } from "../router";

const BLANK = "epochs: 10\n";

export function NewSessionPage() {
  const [configs, setConfigs] = useState<ConfigEntry[] | null>(null);
  const [source, setSource] = useState<string>(""); // a config_path, or "" for YAML from scratch
  const [yaml, setYaml] = useState(BLANK);
  const [original, setOriginal] = useState(BLANK);
  const [name, setName] = useState("");
  const [tags, setTags] = useState("");
  const [start, setStart] = useState(true);
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [failure, setFailure] = useState<unknown>(null);
  const typed = useRef(false);

  useEffect(() => {
    call((c) => c.listConfigs())
      .then(({ configs }) => {
        setConfigs(configs);
        const first = configs.find((c) => c.config);
        // Someone who started typing before the list came keeps their text.
        if (first && !typed.current) choose(first);
      })
      .catch((e: unknown) => {
        setConfigs([]);
        setFailure(e);
      });
  }, []);

  const choose = (entry: ConfigEntry | null) => {
    const text = entry?.config ? dump(entry.config, { lineWidth: 100, noRefs: true }) : BLANK;
    setSource(entry?.config_path ?? "");
    setYaml(text);
    setOriginal(text);
    setErrors([]);
  };

  if (!canWrite()) {
    return (
      <div class="page">
        <h1>New session</h1>
        <p>Your key can read but not create sessions.</p>
      </div>
    );
  }

  const edited = yaml !== original;
  const submit = async (e: Event) => {
    e.preventDefault();
    setErrors([]);
    setFailure(null);
    let config: unknown;
    try {
      config = load(yaml);
    } catch (err) {
      const line = err instanceof YAMLException ? err.mark?.line : undefined;
      setErrors([{ field: "config", message: `YAML: ${(err as Error).message.split("\n")[0]}${line !== undefined ? ` (line ${line + 1})` : ""}` }]);
      return;
    }
    if (!config || typeof config !== "object" || Array.isArray(config)) {
      setErrors([{ field: "config", message: "The config must be a mapping of keys to values." }]);
      return;
    }
    const tagList = tags.split(",").map((t) => t.trim()).filter(Boolean);
    setBusy(true);
    try {
      // Unchanged, the file is named (the server reads it); edited, the YAML goes inline.
      const created = await call((c) =>
        c.createSession({
          ...(source && !edited ? { config_path: source } : { config: config as CreateSessionRequest["config"] }),
          session_name: name.trim() || undefined,
          tags: tagList.length ? tagList : undefined,
        }),
      );
      if (start) await call((c) => c.startTraining(created.session_id));
      navigate(`/sessions/${encodeURIComponent(created.session_id)}`);
    } catch (err) {
      if (err instanceof APIStatusError && (err.status === 422 || err.status === 400 || err.status === 404)) {
        setErrors(fieldErrors({ message: err.message, details: err.details }));
      } else setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  const errorsFor = (prefix: string) => errors.filter((e) => e.field === prefix || e.field.startsWith(`${prefix}.`));
  const configErrors = errors.filter((e) => e.field === "config" || e.field.startsWith("config.") || e.field === "config_path");
  const otherErrors = errors.filter((e) => !configErrors.includes(e) && !errorsFor("session_name").includes(e) && !errorsFor("tags").includes(e));

  return (
    <div class="page narrow">
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href={href("/")}>Sessions</a> <span aria-hidden="true">/</span> New
      </nav>
      <h1>New training session</h1>
      <form class="form" onSubmit={(e) => void submit(e)} noValidate>
        <Card>
          <div class="form-grid">
            <label class="field">
              <span>Start from</span>
              <select
                value={source}
                onChange={(e) => choose(configs?.find((c) => c.config_path === (e.target as HTMLSelectElement).value) ?? null)}
                data-testid="config-source"
              >
                {(configs ?? []).map((c) => (
                  <option value={c.config_path} key={c.config_path} disabled={!c.config}>
                    {c.config_path}
                    {c.error ? " (invalid)" : ""}
                  </option>
                ))}
                <option value="">Empty config</option>
              </select>
            </label>
            <label class="field">
              <span>Name</span>
              <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="experiment_001" name="session_name" aria-invalid={errorsFor("session_name").length > 0} />
              <FieldErrors errors={errorsFor("session_name")} />
            </label>
            <label class="field">
              <span>Tags</span>
              <input value={tags} onInput={(e) => setTags((e.target as HTMLInputElement).value)} placeholder="unet, focal-loss" name="tags" aria-invalid={errorsFor("tags").length > 0} />
              <FieldErrors errors={errorsFor("tags")} />
            </label>
          </div>
          {configs?.find((c) => c.config_path === source)?.error && <ErrorNote error={configs.find((c) => c.config_path === source)!.error} />}
        </Card>
        <Card
          title="Config (YAML)"
          actions={
            <span class="subtle small">
              {source && !edited ? (
                <>
                  from <span class="mono">{source}</span>
                </>
              ) : source ? (
                "edited: sent inline"
              ) : (
                "sent inline"
              )}
            </span>
          }
        >
          <div class="editor">
            <textarea
              class="yaml-editor mono"
              value={yaml}
              spellcheck={false}
              rows={Math.min(28, Math.max(10, yaml.split("\n").length + 1))}
              onInput={(e) => {
                typed.current = true;
                setYaml((e.target as HTMLTextAreaElement).value);
              }}
              aria-label="Config YAML"
              aria-invalid={configErrors.length > 0}
              name="config"
            />
          </div>
          <ul class="field-errors" data-testid="config-errors">
            {configErrors.map((e, i) => {
              const path = e.field.replace(/^config\.?/, "");
              const line = path ? yamlLineOf(yaml, path) : null;
              return (
                <li key={i}>
                  {path && <code>{path}</code>}
                  {line !== null && <span class="subtle"> (line {line})</span>}
                  {path ? ": " : ""}
                  {e.message}
                </li>
              );
            })}
          </ul>
        </Card>
        <FieldErrors errors={otherErrors} />
        <ErrorNote error={failure} />
        <div class="form-actions">
          <label class="check">
            <input type="checkbox" checked={start} onChange={(e) => setStart((e.target as HTMLInputElement).checked)} name="start" /> Start training right away
          </label>
          <a class="btn" href={href("/")}>
            Cancel
          </a>
          <button class="btn btn-primary" type="submit" disabled={busy} data-testid="create">
            {busy ? "Creating…" : start ? "Create and start" : "Create"}
          </button>
        </div>
      </form>
    </div>
  );
}

function FieldErrors({ errors }: { errors: FieldError[] }) {
  if (!errors.length) return null;
  return (
    <ul class="field-errors" role="alert">
      {errors.map((e, i) => (
        <li key={i}>{e.field && !/^(session_name|tags)/.test(e.field) ? <><code>{e.field}</code>: </> : null}{e.message}</li>
      ))}
    </ul>
  );
}
