// The epoch metrics, one chart per quantity: train_X and val_X drawn together (loss first),
// every other metric alone.
import { useMemo } from "preact/hooks";

import { alignSeries, type Series } from "../lib/series";
import { Chart, PALETTE } from "./Chart";
import { Card } from "./ui";

export interface MetricGroup {
  title: string;
  metrics: string[];
}

/** train_loss + val_loss → "loss"; val_dice → "dice"; learning_rate stays. Loss first. */
export function groupMetrics(names: readonly string[]): MetricGroup[] {
  const groups = new Map<string, string[]>();
  for (const name of [...names].sort()) {
    const base = name.replace(/^(train|val|test)_/, "");
    groups.set(base, [...(groups.get(base) ?? []), name]);
  }
  const order = (t: string) => (t === "loss" ? 0 : t === "learning_rate" ? 2 : 1);
  return [...groups.entries()]
    .map(([title, metrics]) => ({ title, metrics: metrics.sort((a, b) => (a.startsWith("train") ? -1 : b.startsWith("train") ? 1 : a < b ? -1 : 1)) }))
    .sort((a, b) => order(a.title) - order(b.title) || (a.title < b.title ? -1 : 1));
}

export function EpochCharts({ series }: { series: Record<string, Series> }) {
  const groups = useMemo(() => groupMetrics(Object.keys(series).filter((k) => k !== "loss")), [Object.keys(series).sort().join(",")]);
  if (groups.length === 0) return null;
  const [first, ...rest] = groups;
  return (
    <>
      <EpochChart group={first!} series={series} big />
      {rest.length > 0 && (
        <div class="chart-grid">
          {rest.map((g) => (
            <EpochChart key={g.title} group={g} series={series} />
          ))}
        </div>
      )}
    </>
  );
}

function EpochChart({ group, series, big }: { group: MetricGroup; series: Record<string, Series>; big?: boolean }) {
  const list = group.metrics.map((m) => series[m]!);
  const data = useMemo(() => alignSeries(list), list);
  const points = data[0].length;
  const testId = `chart-${group.title}`;
  return (
    <Card title={group.title === "loss" ? "Loss" : group.title.replace(/_/g, " ")} class="chart-card">
      <div data-testid={testId}>
        <Chart
          label={`${group.metrics.join(" and ")} by epoch`}
          data={data}
          series={group.metrics.map((m, i) => ({ label: m, color: PALETTE[i % PALETTE.length]! }))}
          xLabel="epoch"
          height={big ? 260 : 180}
        />
        <div class="chart-foot subtle small">
          <span data-testid={`${testId}-points`}>{points}</span> {points === 1 ? "epoch" : "epochs"}
        </div>
      </div>
    </Card>
  );
}
