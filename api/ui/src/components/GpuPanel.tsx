// The trainer's GPU telemetry (utilisation, memory, power), when the session reports any.
import type { GpuSample } from "@pivot/client";
import { useMemo, useState } from "preact/hooks";

import { call } from "../api";
import { formatNumber, parseTime } from "../lib/format";
import { Chart, PALETTE } from "./Chart";
import { Card, usePoll } from "./ui";

type Field = "utilization_percent" | "memory_percent" | "power_watts";

export function GpuPanel({ sessionId, live }: { sessionId: string; live: boolean }) {
  const [samples, setSamples] = useState<GpuSample[]>([]);
  // Every 5 s while it trains on GPUs; every 10 s while it trains and has reported none (a CPU
  // run, or one yet to report); once when it has ended.
  const period = !live ? 3_600_000 : samples.length > 0 ? 5000 : 10_000;
  usePoll(async () => setSamples((await call((c) => c.sessionGpu(sessionId, { limit: 120 }))).samples), period, [sessionId]);
  const gpus = useMemo(() => [...new Set(samples.flatMap((s) => s.gpus.map((g) => g.index)))].sort((a, b) => a - b), [samples]);
  if (samples.length === 0) return null;
  const last = samples[samples.length - 1]!;
  const chart = (field: Field) => {
    const xs = samples.map((s) => (parseTime(s.timestamp) ?? 0) / 1000);
    const columns = gpus.map((i) => samples.map((s) => s.gpus.find((g) => g.index === i)?.[field] ?? null));
    return [xs, ...columns] as [number[], ...(number | null)[][]];
  };
  const series = gpus.map((i, n) => ({ label: `GPU ${i}`, color: PALETTE[n % PALETTE.length]! }));
  return (
    <Card title="GPU" id="gpu">
      <div class="gpu-now">
        {last.gpus.map((g) => (
          <div class="stat" key={g.index}>
            <div class="stat-label">
              GPU {g.index} · {g.name}
            </div>
            <div class="stat-value small">
              {formatNumber(g.utilization_percent)}% util · {formatNumber(g.memory_percent)}% mem · {formatNumber(g.power_watts)} W
              {g.temperature_c !== null && g.temperature_c !== undefined ? ` · ${formatNumber(g.temperature_c)} °C` : ""}
            </div>
          </div>
        ))}
      </div>
      <div class="chart-grid three">
        <div>
          <h3>Utilisation %</h3>
          <Chart label="GPU utilisation" data={chart("utilization_percent")} series={series} xLabel="" xTime height={140} />
        </div>
        <div>
          <h3>Memory %</h3>
          <Chart label="GPU memory" data={chart("memory_percent")} series={series} xLabel="" xTime height={140} />
        </div>
        <div>
          <h3>Power W</h3>
          <Chart label="GPU power" data={chart("power_watts")} series={series} xLabel="" xTime height={140} />
        </div>
      </div>
    </Card>
  );
}
