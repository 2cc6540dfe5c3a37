// The dashboard: workflows by state, the job queue, the last hour's
// throughput and failure rate, and LLM spend per day. Re-read every 5 s.
// Each chart has its numbers in a table underneath, for screen readers and
// for copying.

import { useEffect, type ReactNode } from "react";
import {
  Area,
  Bar,
  BarChart,
  CartesianGrid,
  ComposedChart,
  Legend,
  Line,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";
import { getDashboard, type Dashboard as Data } from "./api";
import { JOB_STATES, queueBars, spendBars, throughputPoints, throughputTotals, workflowBars } from "./charts";
import { STATUSES } from "./filters";
import { count, usd } from "./format";
import { duration } from "./time";
import { LoadError, Loading, When, useResource } from "./ui";

const POLL_MS = 5000;

const STATUS_COLOR: Record<string, string> = {
  running: "var(--accent)",
  waiting: "var(--warn)",
  completed: "var(--ok)",
  failed: "var(--bad)",
  cancelled: "var(--muted)",
};

const JOB_COLOR: Record<string, string> = {
  available: "var(--accent)",
  scheduled: "var(--muted)",
  running: "var(--ok)",
  retrying: "var(--warn)",
  dead: "var(--bad)",
};

const TOOLTIP = {
  contentStyle: { background: "var(--panel)", border: "1px solid var(--line)", borderRadius: 8, color: "var(--text)" },
  labelStyle: { color: "var(--text)", fontWeight: 600 },
  cursor: { fill: "color-mix(in srgb, var(--accent) 8%, transparent)" },
};

const AXIS = { stroke: "var(--muted)", tick: { fill: "var(--muted)", fontSize: 12 } };

/** Legends in the series' own order (status order, not alphabetical). */
const LEGEND = { itemSorter: null, wrapperStyle: { fontSize: 13 } } as const;

export function Dashboard() {
  const dash = useResource((signal) => getDashboard(signal), [], POLL_MS);

  useEffect(() => {
    document.title = "Dashboard — floe inspector";
  }, []);

  const data = dash.data;
  return (
    <div className="stack">
      <div className="card-head">
        <h1 className="page-title">Dashboard</h1>
        <span className="muted small" role="status">
          {data ? (
            <>
              generated <When t={data.generated_at} /> · refreshed every 5 s
            </>
          ) : null}
        </span>
      </div>
      <LoadError error={dash.error} what="the dashboard" />
      <div className="charts">
        <ChartCard title="Workflows by state" testId="chart-workflows" loading={!data && !dash.error}>
          {data && <WorkflowsChart rows={data.workflows} />}
        </ChartCard>
        <ChartCard title="Job queue" testId="chart-queue" loading={!data && !dash.error}>
          {data && <QueueChart rows={data.queue} />}
        </ChartCard>
        <ChartCard title="Throughput, last hour" testId="chart-throughput" loading={!data && !dash.error}>
          {data && <ThroughputChart rows={data.throughput} />}
        </ChartCard>
        <ChartCard title="LLM spend per day" testId="chart-llm" loading={!data && !dash.error}>
          {data && <SpendChart rows={data.llm_spend} />}
        </ChartCard>
      </div>
    </div>
  );
}

function ChartCard({ title, testId, loading, children }: { title: string; testId: string; loading: boolean; children: ReactNode }) {
  const id = `${testId}-heading`;
  return (
    <section className="card chart-card" data-testid={testId} aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {loading ? <Loading what="the chart" /> : children}
    </section>
  );
}

function Empty({ children }: { children: ReactNode }) {
  return <p className="muted empty-chart">{children}</p>;
}

/** The chart's numbers as a table, folded away. */
function DataTable({ caption, head, rows }: { caption: string; head: string[]; rows: (string | number)[][] }) {
  return (
    <details className="chart-data">
      <summary>Show the numbers</summary>
      <div className="table-wrap" tabIndex={0} role="region" aria-label={caption}>
        <table className="table">
          <caption className="sr-only">{caption}</caption>
          <thead>
            <tr>
              {head.map((h) => (
                <th key={h} scope="col">
                  {h}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((r, i) => (
              <tr key={i}>
                {r.map((c, j) => (
                  <td key={j} className={typeof c === "number" ? "num" : undefined}>
                    {c}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </details>
  );
}

/** Height for a horizontal bar chart of `n` bars. */
const barsHeight = (n: number) => Math.max(160, 48 + n * 34);

function WorkflowsChart({ rows }: { rows: Data["workflows"] }) {
  const bars = workflowBars(rows);
  if (bars.length === 0) return <Empty>No workflows yet.</Empty>;
  return (
    <>
      <div className="chart" style={{ height: barsHeight(bars.length) }}>
        <ResponsiveContainer width="100%" height="100%">
          <BarChart data={bars} layout="vertical" margin={{ top: 4, right: 16, bottom: 4, left: 4 }}>
            <CartesianGrid stroke="var(--line)" horizontal={false} />
            <XAxis type="number" allowDecimals={false} {...AXIS} />
            <YAxis type="category" dataKey="label" width={150} {...AXIS} />
            <Tooltip {...TOOLTIP} />
            <Legend {...LEGEND} />
            {STATUSES.map((s) => (
              <Bar key={s} dataKey={s} name={s} stackId="status" fill={STATUS_COLOR[s]} isAnimationActive={false} />
            ))}
          </BarChart>
        </ResponsiveContainer>
      </div>
      <DataTable
        caption="Workflows by kind, state and status"
        head={["kind · state", ...STATUSES, "total"]}
        rows={bars.map((b) => [b.label, ...STATUSES.map((s) => b[s]), b.total])}
      />
    </>
  );
}

function QueueChart({ rows }: { rows: Data["queue"] }) {
  const bars = queueBars(rows);
  if (bars.length === 0) return <Empty>The queue is empty.</Empty>;
  const height = barsHeight(bars.length);
  return (
    <>
      <h3 className="chart-sub">Depth by job state</h3>
      <div className="chart" style={{ height }}>
        <ResponsiveContainer width="100%" height="100%">
          <BarChart data={bars} layout="vertical" margin={{ top: 4, right: 16, bottom: 4, left: 4 }}>
            <CartesianGrid stroke="var(--line)" horizontal={false} />
            <XAxis type="number" allowDecimals={false} {...AXIS} />
            <YAxis type="category" dataKey="label" width={120} {...AXIS} />
            <Tooltip {...TOOLTIP} />
            <Legend {...LEGEND} />
            {JOB_STATES.map((s) => (
              <Bar key={s} dataKey={s} name={s} stackId="state" fill={JOB_COLOR[s]} isAnimationActive={false} />
            ))}
          </BarChart>
        </ResponsiveContainer>
      </div>
      <h3 className="chart-sub">Oldest job</h3>
      <div className="chart" style={{ height }}>
        <ResponsiveContainer width="100%" height="100%">
          <BarChart data={bars} layout="vertical" margin={{ top: 4, right: 16, bottom: 4, left: 4 }}>
            <CartesianGrid stroke="var(--line)" horizontal={false} />
            <XAxis type="number" tickFormatter={(v: number) => duration(v)} {...AXIS} />
            <YAxis type="category" dataKey="label" width={120} {...AXIS} />
            <Tooltip {...TOOLTIP} formatter={(v) => duration(Number(v))} />
            <Bar dataKey="oldest_age_seconds" name="oldest job age" fill="var(--warn)" isAnimationActive={false} />
          </BarChart>
        </ResponsiveContainer>
      </div>
      <DataTable
        caption="Jobs by queue, kind and state, and the oldest job's age"
        head={["queue / kind", ...JOB_STATES, "total", "oldest"]}
        rows={bars.map((b) => [b.label, ...JOB_STATES.map((s) => Number(b[s]) || 0), b.total, duration(b.oldest_age_seconds)])}
      />
    </>
  );
}

function ThroughputChart({ rows }: { rows: Data["throughput"] }) {
  const points = throughputPoints(rows);
  if (points.length === 0) return <Empty>No data for the last hour.</Empty>;
  const totals = throughputTotals(points);
  return (
    <>
      <p className="small">
        Last hour: <strong>{count(totals.completed)}</strong> completed, <strong>{count(totals.failed)}</strong> failed,{" "}
        {count(totals.cancelled)} cancelled · failure rate{" "}
        <strong>{totals.failure_rate === null ? "–" : `${totals.failure_rate}%`}</strong>
      </p>
      <div className="chart" style={{ height: 260 }}>
        <ResponsiveContainer width="100%" height="100%">
          <ComposedChart data={points} margin={{ top: 8, right: 4, bottom: 4, left: -8 }}>
            <CartesianGrid stroke="var(--line)" vertical={false} />
            <XAxis dataKey="label" minTickGap={24} {...AXIS} />
            <YAxis yAxisId="n" allowDecimals={false} {...AXIS} />
            <YAxis yAxisId="rate" orientation="right" domain={[0, 100]} unit="%" width={44} {...AXIS} />
            <Tooltip
              {...TOOLTIP}
              formatter={(v, name) => (name === "failure rate" ? (v === undefined || v === null ? "–" : `${v}%`) : v)}
            />
            <Legend {...LEGEND} />
            <Area
              yAxisId="n"
              type="monotone"
              dataKey="completed"
              name="completed"
              stroke="var(--ok)"
              fill="var(--ok)"
              fillOpacity={0.25}
              isAnimationActive={false}
            />
            <Area
              yAxisId="n"
              type="monotone"
              dataKey="failed"
              name="failed"
              stroke="var(--bad)"
              fill="var(--bad)"
              fillOpacity={0.25}
              isAnimationActive={false}
            />
            <Line
              yAxisId="rate"
              type="monotone"
              dataKey="failure_rate"
              name="failure rate"
              stroke="var(--warn)"
              strokeDasharray="4 3"
              dot={false}
              connectNulls
              isAnimationActive={false}
            />
          </ComposedChart>
        </ResponsiveContainer>
      </div>
      <DataTable
        caption="Workflows finished per minute, last hour"
        head={["minute", "completed", "failed", "cancelled", "failure rate", "transitions", "activities failed"]}
        rows={points.map((p) => [
          p.label,
          p.completed,
          p.failed,
          p.cancelled,
          p.failure_rate === null ? "–" : `${p.failure_rate}%`,
          p.transitions,
          p.activities_failed,
        ])}
      />
    </>
  );
}

function SpendChart({ rows }: { rows: Data["llm_spend"] }) {
  const bars = spendBars(rows);
  if (bars.length === 0) return <Empty>No LLM calls recorded.</Empty>;
  const total = bars.reduce((n, b) => n + b.cost_usd, 0);
  return (
    <>
      <p className="small">
        Total over {bars.length} day{bars.length === 1 ? "" : "s"}: <strong>{usd(total)}</strong>
      </p>
      <div className="chart" style={{ height: 240 }}>
        <ResponsiveContainer width="100%" height="100%">
          <BarChart data={bars} margin={{ top: 8, right: 4, bottom: 4, left: 0 }}>
            <CartesianGrid stroke="var(--line)" vertical={false} />
            <XAxis dataKey="label" minTickGap={16} {...AXIS} />
            <YAxis tickFormatter={(v: number) => `$${v.toFixed(2)}`} width={56} {...AXIS} />
            <Tooltip
              {...TOOLTIP}
              formatter={(v, _name, item) => {
                const p = item.payload as (typeof bars)[number] | undefined;
                return p ? `${usd(Number(v))} · ${count(p.calls)} calls · ${count(p.tokens_in)} in / ${count(p.tokens_out)} out` : usd(Number(v));
              }}
            />
            <Bar dataKey="cost_usd" name="cost (USD)" fill="var(--accent)" isAnimationActive={false} />
          </BarChart>
        </ResponsiveContainer>
      </div>
      <DataTable
        caption="LLM spend per day"
        head={["day", "calls", "tokens in", "tokens out", "cost"]}
        rows={bars.map((b) => [b.label, b.calls, b.tokens_in, b.tokens_out, usd(b.cost_usd)])}
      />
    </>
  );
}
