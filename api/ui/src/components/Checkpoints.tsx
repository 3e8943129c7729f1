// A session's checkpoints: epoch, metric, the best marker, size, sha256; download and delete.
import type { Checkpoint } from "@pivot/client";
import { useState } from "preact/hooks";

import { auth, call, canWrite, client } from "../api";
import { formatBytes, formatNumber, shortHash } from "../lib/format";
import { Card, Confirm, Empty, ErrorNote, RelTime } from "./ui";

export function Checkpoints({ items, error, onChanged }: { items: Checkpoint[] | null; error: unknown; onChanged: () => void }) {
  const [deleting, setDeleting] = useState<Checkpoint | null>(null);
  const [downloadError, setDownloadError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [all, setAll] = useState(false);
  const a = auth.get();
  const keyed = a.state === "in" && a.me.auth_enabled;

  // With keys on, a link cannot carry the Authorization header (and a key in a URL would
  // reach access logs): fetch it with the header, then hand the bytes to the browser.
  const download = async (c: Checkpoint) => {
    setBusy(c.checkpoint_id);
    setDownloadError(null);
    try {
      const response = await call((cl) => cl.downloadCheckpoint(c.checkpoint_id, { timeoutMs: null }));
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = fileName(response.headers.get("content-disposition")) ?? `${c.checkpoint_id}.pth`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (e) {
      setDownloadError(e);
    } finally {
      setBusy(null);
    }
  };

  return (
    <Card title="Checkpoints" id="checkpoints">
      <ErrorNote error={error ?? downloadError} />
      {items === null ? null : items.length === 0 ? (
        <Empty>No checkpoints yet.</Empty>
      ) : (
        <div class="table-wrap">
          <table class="table" data-testid="checkpoints-table">
            <thead>
              <tr>
                <th class="num">Epoch</th>
                <th>Metric</th>
                <th class="num">Size</th>
                <th>SHA-256</th>
                <th>Saved</th>
                <th class="actions-col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {shown(items, all).map((c) => (
                <tr key={c.checkpoint_id} data-checkpoint-id={c.checkpoint_id} data-sha256={c.sha256}>
                  <td class="num">
                    {c.epoch}
                    {c.is_best && (
                      <span class="best" title="Best by the session's metric" data-testid="best-marker">
                        ★ best
                      </span>
                    )}
                  </td>
                  <td class="mono">
                    {c.metric_name ? <span class="subtle">{c.metric_name} </span> : null}
                    {formatNumber(c.metric_value)}
                  </td>
                  <td class="num">{formatBytes(c.file_size_mb * 1e6)}</td>
                  <td class="mono" title={c.sha256}>
                    {shortHash(c.sha256)}
                  </td>
                  <td class="nowrap">
                    <RelTime iso={c.created_at} />
                  </td>
                  <td class="actions-col">
                    {keyed ? (
                      <button class="btn btn-sm" onClick={() => void download(c)} disabled={busy === c.checkpoint_id} aria-label={`Download checkpoint of epoch ${c.epoch}`}>
                        {busy === c.checkpoint_id ? "Downloading…" : "Download"}
                      </button>
                    ) : (
                      <a class="btn btn-sm" href={client.checkpointDownloadUrl(c.checkpoint_id)} download aria-label={`Download checkpoint of epoch ${c.epoch}`}>
                        Download
                      </a>
                    )}
                    {canWrite() && (
                      <button class="btn btn-sm btn-danger-ghost" onClick={() => setDeleting(c)} aria-label={`Delete checkpoint of epoch ${c.epoch}`}>
                        Delete
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {items.length > SHOWN && (
            <button class="btn btn-sm btn-ghost" onClick={() => setAll(!all)} aria-expanded={all}>
              {all ? "Show fewer" : `Show all ${items.length}`}
            </button>
          )}
        </div>
      )}
      {deleting && (
        <Confirm
          title="Delete checkpoint?"
          confirmLabel="Delete"
          danger
          onConfirm={async () => {
            await call((c) => c.deleteCheckpoint(deleting.checkpoint_id));
            onChanged();
          }}
          onClose={() => setDeleting(null)}
        >
          <p>
            The checkpoint of epoch {deleting.epoch} (<span class="mono">{deleting.checkpoint_id}</span>) is removed from storage. This cannot be undone.
          </p>
        </Confirm>
      )}
    </Card>
  );
}

function fileName(disposition: string | null): string | null {
  if (!disposition) return null;
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) return decodeURIComponent(star[1]!);
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1]! : null;
}

const SHOWN = 8;

/** A long run keeps many: the newest few and the best ones, unless all are asked for. */
function shown(items: Checkpoint[], all: boolean): Checkpoint[] {
  if (all || items.length <= SHOWN) return items;
  const newest = [...items].sort((a, b) => b.epoch - a.epoch || b.step - a.step).slice(0, SHOWN);
  const keep = new Set([...newest, ...items.filter((c) => c.is_best)]);
  return items.filter((c) => keep.has(c));
}
