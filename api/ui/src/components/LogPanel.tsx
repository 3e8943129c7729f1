// The trainer's log: followed live while the session runs (fetch + a stream reader), the
// tail of it once it has ended. Scrolls with new lines unless you scrolled up to read.
import { useEffect, useRef, useState } from "preact/hooks";

import { call, client } from "../api";
import { Card, ErrorNote } from "./ui";

const KEEP = 5000; // lines kept in the page
const TAIL = 500;

export function LogPanel({ sessionId, live, replicas }: { sessionId: string; live: boolean; replicas: number }) {
  const [rank, setRank] = useState<string>("0");
  const [lines, setLines] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [following, setFollowing] = useState(false);
  const box = useRef<HTMLPreElement>(null);
  const pinned = useRef(true); // at the bottom: keep following the newest line

  useEffect(() => {
    const controller = new AbortController();
    const rankOpt = rank === "all" ? "all" : Number(rank);
    setLines([]);
    setError(null);
    const run = async () => {
      if (!live) {
        const text = await call((c) => c.sessionLogs(sessionId, { tail: 2000, rank: rankOpt }));
        setLines(text ? text.replace(/\n$/, "").split("\n") : []);
        return;
      }
      // A pod may end and another start (a retry): follow again while the session is live.
      let first = true;
      while (!controller.signal.aborted) {
        setFollowing(true);
        let buffer: string[] = [];
        let timer: ReturnType<typeof setTimeout> | undefined;
        const flush = () => {
          timer = undefined;
          const add = buffer;
          buffer = [];
          setLines((prev) => {
            const next = prev.concat(add);
            return next.length > KEEP ? next.slice(next.length - KEEP) : next;
          });
        };
        if (!first) setLines([]);
        for await (const line of client.followLogs(sessionId, { tail: TAIL, rank: rankOpt, signal: controller.signal })) {
          buffer.push(line);
          timer ??= setTimeout(flush, 50); // one render per burst of lines
        }
        clearTimeout(timer);
        flush();
        setFollowing(false);
        first = false;
        await new Promise((r) => setTimeout(r, 2000));
      }
    };
    run().catch((e: unknown) => {
      if (!controller.signal.aborted) setError(e);
      setFollowing(false);
    });
    return () => controller.abort();
  }, [sessionId, live, rank]);

  useEffect(() => {
    const el = box.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  }, [lines]);

  return (
    <Card
      title="Log"
      id="log"
      actions={
        <>
          {following && (
            <span class="following" data-testid="log-following">
              <span class="pulse" aria-hidden="true" /> following
            </span>
          )}
          {replicas > 1 && (
            <select value={rank} onChange={(e) => setRank((e.target as HTMLSelectElement).value)} aria-label="Rank">
              {Array.from({ length: replicas }, (_, i) => (
                <option value={String(i)} key={i}>
                  rank {i}
                </option>
              ))}
              <option value="all">all ranks</option>
            </select>
          )}
        </>
      }
    >
      <ErrorNote error={error} />
      <pre
        class="log"
        ref={box}
        data-testid="log"
        tabIndex={0}
        aria-label="Trainer log"
        onScroll={(e) => {
          const el = e.currentTarget;
          pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {lines.length ? lines.join("\n") : <span class="muted">{live ? "Waiting for the trainer's output…" : "No log."}</span>}
      </pre>
      <div class="chart-foot subtle small">{lines.length} lines</div>
    </Card>
  );
}
