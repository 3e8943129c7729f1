// The API host's CPU, memory, disk and GPUs with a small live chart, and the GPUs each
// running trainer reports.
import type { Resources } from "@pivot/client";
import { useState } from "preact/hooks";

import { call } from "../api";
import { Chart, PALETTE } from "../components/Chart";
import { Card, Empty, ErrorNote, Progress, usePoll } from "../components/ui";
import { formatNumber } from "../lib/format";
import { href } from "../router";

const KEEP = 90; // samples in the live chart (3 minutes at one every 2 s)

export function ResourcesPage() {
  const [current, setCurrent] = useState<Resources | null>(null);
  const [history, setHistory] = useState<{ t: number[]; cpu: number[]; mem: number[] }>({ t: [], cpu: [], mem: [] });
  const [error, setError] = useState<unknown>(null);

  usePoll(
    async () => {
      try {
        const r = await call((c) => c.resources());
        setCurrent(r);
        setError(null);
        setHistory((h) => ({
          t: [...h.t, Date.now() / 1000].slice(-KEEP),
          cpu: [...h.cpu, r.cpu.percent].slice(-KEEP),
          mem: [...h.mem, r.memory.percent].slice(-KEEP),
        }));
      } catch (e) {
        setError(e);
      }
    },
    2000,
    [],
  );

  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Resources</h1>
          <p class="subtle">The API host, refreshed every 2 s.</p>
        </div>
      </div>
      <ErrorNote error={error} />
      {current && (
        <>
          <section class="stats" aria-label="Host">
            <Usage label={`CPU · ${current.cpu.count} cores`} percent={current.cpu.percent} />
            <Usage label="Memory" percent={current.memory.percent} detail={`${formatNumber(current.memory.used_gb)} of ${formatNumber(current.memory.total_gb)} GB`} />
            <Usage label="Disk" percent={current.disk.percent} detail={`${formatNumber(current.disk.used_gb)} of ${formatNumber(current.disk.total_gb)} GB`} />
          </section>
          <Card title="CPU and memory">
            <div data-testid="resources-chart">
              <Chart
                label="CPU and memory percent over the last minutes"
                data={[history.t, history.cpu, history.mem]}
                series={[
                  { label: "cpu %", color: PALETTE[0]! },
                  { label: "memory %", color: PALETTE[1]! },
                ]}
                xLabel=""
                xTime
                height={200}
              />
            </div>
            {current.cpu.per_cpu.length > 1 && (
              <div class="cores" aria-label="Per core">
                {current.cpu.per_cpu.map((p, i) => (
                  <div class="core" key={i} title={`core ${i}: ${p}%`}>
                    <div class="core-fill" style={{ height: `${Math.min(100, p)}%` }} />
                  </div>
                ))}
              </div>
            )}
          </Card>
          <Card title="GPUs of this host">
            {current.gpu.length === 0 ? (
              <Empty>No GPU on the API's host.</Empty>
            ) : (
              <table class="table">
                <thead>
                  <tr>
                    <th>GPU</th>
                    <th class="num">Utilisation</th>
                    <th class="num">Memory</th>
                    <th class="num">Temperature</th>
                  </tr>
                </thead>
                <tbody>
                  {current.gpu.map((g) => (
                    <tr key={g.id}>
                      <td>
                        {g.id} · {g.name}
                      </td>
                      <td class="num">{formatNumber(g.utilization)}%</td>
                      <td class="num">
                        {formatNumber(g.memory_used_gb)} / {formatNumber(g.memory_total_gb)} GB
                      </td>
                      <td class="num">{formatNumber(g.temperature)} °C</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Card>
          <Card title="Trainers' GPUs">
            {(current.sessions ?? []).length === 0 ? (
              <Empty>No running session reports GPU telemetry.</Empty>
            ) : (
              <table class="table" data-testid="trainer-gpus">
                <thead>
                  <tr>
                    <th>Session</th>
                    <th>GPU</th>
                    <th class="num">Utilisation</th>
                    <th class="num">Memory</th>
                    <th class="num">Power</th>
                    <th class="num">Temperature</th>
                  </tr>
                </thead>
                <tbody>
                  {(current.sessions ?? []).flatMap((s) =>
                    s.gpus.map((g) => (
                      <tr key={`${s.session_id}-${g.index}`}>
                        <td>
                          <a href={href(`/sessions/${encodeURIComponent(s.session_id)}`)}>{s.session_name || s.session_id}</a>
                        </td>
                        <td>
                          {g.index} · {g.name}
                        </td>
                        <td class="num">{formatNumber(g.utilization_percent)}%</td>
                        <td class="num">{formatNumber(g.memory_percent)}%</td>
                        <td class="num">{formatNumber(g.power_watts)} W</td>
                        <td class="num">{formatNumber(g.temperature_c)} °C</td>
                      </tr>
                    )),
                  )}
                </tbody>
              </table>
            )}
          </Card>
        </>
      )}
    </div>
  );
}

function Usage({ label, percent, detail }: { label: string; percent: number; detail?: string }) {
  return (
    <div class="stat">
      <div class="stat-label">{label}</div>
      <div class="stat-value">{formatNumber(percent)}%</div>
      <Progress value={percent / 100} status={percent > 90 ? "failed" : percent > 75 ? "pending" : "running"} />
      {detail && <div class="subtle small">{detail}</div>}
    </div>
  );
}
