// Configs as people compare and edit them: flattened key paths, the keys that differ between
// sessions, and the API's validation errors placed next to the field (or YAML line) they name.

export type Flat = Record<string, unknown>;

/** `{a: {b: 1}, c: [1]}` → `{"a.b": 1, "c": [1]}` (arrays are values, not paths). */
export function flatten(value: unknown, prefix = ""): Flat {
  const out: Flat = {};
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    if (prefix) out[prefix] = value;
    return out;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0 && prefix) out[prefix] = {};
  for (const [key, inner] of entries) Object.assign(out, flatten(inner, prefix ? `${prefix}.${key}` : key));
  return out;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The key paths whose values are not the same in every config (absent counts as a value). */
export function differingKeys(configs: readonly unknown[]): string[] {
  const flats = configs.map((c) => flatten(c));
  const keys = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort();
  return keys.filter((k) => flats.some((f) => !(k in f) || !same(f[k], flats[0]![k])) || !(k in flats[0]!));
}

export interface FieldError {
  /** A dotted path as the API names it: "config.epochs", "tags.0", "session_name"; "" for the form. */
  field: string;
  message: string;
}

/** The API's error envelope's details as field errors (`errors[]`, or one `field`). */
export function fieldErrors(error: { message: string; details?: Record<string, unknown> }): FieldError[] {
  const details = error.details ?? {};
  const list = Array.isArray(details.errors) ? (details.errors as Array<Record<string, unknown>>) : [];
  const out: FieldError[] = list
    .filter((e) => e && typeof e === "object")
    .map((e) => ({ field: typeof e.field === "string" ? e.field : "", message: String(e.message ?? e.reason ?? error.message) }));
  if (out.length === 0) {
    const field = typeof details.field === "string" ? details.field : "";
    const reason = typeof details.reason === "string" ? details.reason : error.message;
    out.push({ field, message: reason });
  }
  return out;
}

/**
 * The 1-based line of a dotted key path in YAML text ("checkpoint.metric"), found by
 * indentation: the first `metric:` nested under the first top-level `checkpoint:`. Null
 * when a key is not written in the text (e.g. a default).
 */
export function yamlLineOf(text: string, path: string): number | null {
  const parts = path.split(".").filter((p) => p !== "" && !/^\d+$/.test(p));
  if (parts.length === 0) return null;
  const lines = text.split("\n");
  let from = 0;
  let parentIndent = -1;
  let found: number | null = null;
  for (const part of parts) {
    found = null;
    let childIndent = -1; // the indent of the block's own keys (deeper lines are nested)
    for (let i = from; i < lines.length; i++) {
      const line = lines[i]!;
      if (!line.trim() || line.trimStart().startsWith("#")) continue;
      const indent = line.length - line.trimStart().length;
      if (indent <= parentIndent) break; // left the parent's block
      if (childIndent < 0) childIndent = indent;
      if (indent !== childIndent) continue;
      const key = line.trimStart().replace(/^- /, "");
      if (key.startsWith(`${part}:`) || key.startsWith(`"${part}":`) || key.startsWith(`'${part}':`)) {
        found = i;
        from = i + 1;
        parentIndent = indent;
        break;
      }
    }
    if (found === null) return null;
  }
  return found === null ? null : found + 1;
}
