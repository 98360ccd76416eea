// The results of a search, best validation loss first: a table for the terminal, results.md, results.csv,
// results.json, and val-loss.svg (validation loss against training time, one line per trial).

import * as path from "node:path";
import { writeFileAtomic } from "../checkpoint/atomic.js";
import { lineChartSvg } from "../util/chart.js";
import type { SearchState, TrialRecord } from "./search.js";

export interface ResultRow {
  rank: number;
  trial: string;
  settings: Record<string, unknown>;
  bestValLoss: number | null;
  lastValLoss: number | null;
  seconds: number;
  steps: number;
  charsPerSec: number | null;
  rung: number; // 1-based rung reached (random search: 1)
  status: string; // the run's status, "failed: ..." or "not started"
  dir: string;
}

/** Rows sorted by best validation loss; trials without one (failed, not started) last, in trial order. */
export function resultRows(state: SearchState): ResultRow[] {
  const score = (t: TrialRecord): number => t.outcome?.bestValLoss ?? Infinity;
  const sorted = [...state.trials].sort((a, b) => score(a) - score(b) || a.id.localeCompare(b.id));
  return sorted.map((t, i) => ({
    rank: i + 1,
    trial: t.id,
    settings: t.settings,
    bestValLoss: t.outcome?.bestValLoss ?? null,
    lastValLoss: t.outcome?.lastValLoss ?? null,
    seconds: t.outcome?.seconds ?? 0,
    steps: t.outcome?.steps ?? 0,
    charsPerSec: t.outcome?.charsPerSec ?? null,
    rung: t.rung + 1,
    status:
      t.state === "failed"
        ? `failed: ${t.error ?? "?"}`
        : t.state === "pending" && !t.outcome?.runStatus
          ? "not started"
          : t.state === "running"
            ? "interrupted"
            : (t.outcome?.runStatus ?? "?"),
    dir: path.join("trials", t.id),
  }));
}

const keysOf = (rows: ResultRow[]): string[] => [...new Set(rows.flatMap((r) => Object.keys(r.settings)))];
const num = (x: number | null, digits: number): string => (x === null ? "-" : x.toFixed(digits));
const speed = (x: number | null): string => (x === null ? "-" : Math.round(x).toLocaleString("en-US"));

function cells(rows: ResultRow[]): string[][] {
  const keys = keysOf(rows);
  const head = ["#", "trial", ...keys, "val loss", "time (s)", "steps", "chars/s", "rung", "status"];
  const body = rows.map((r) => [
    String(r.rank),
    r.trial,
    ...keys.map((k) => (k in r.settings ? String(r.settings[k]) : "")),
    num(r.bestValLoss, 4),
    num(r.seconds, 1),
    String(r.steps),
    speed(r.charsPerSec),
    String(r.rung),
    r.status,
  ]);
  return [head, ...body];
}

/** Aligned columns for the terminal. */
export function formatTable(rows: ResultRow[]): string {
  const all = cells(rows);
  const widths = all[0].map((_, c) => Math.max(...all.map((r) => r[c].length)));
  return all
    .map((r) =>
      r
        .map((v, c) => v.padEnd(widths[c]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function markdownTable(rows: ResultRow[]): string {
  const all = cells(rows).map((r) => r.map((v) => v.replace(/\|/g, "\\|")));
  const line = (r: string[]): string => `| ${r.join(" | ")} |`;
  return [line(all[0]), line(all[0].map(() => "---")), ...all.slice(1).map(line)].join("\n");
}

export function csvTable(rows: ResultRow[]): string {
  const keys = keysOf(rows);
  const quote = (v: string): string => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const head = [
    "rank",
    "trial",
    ...keys,
    "best_val_loss",
    "last_val_loss",
    "seconds",
    "steps",
    "chars_per_sec",
    "rung",
    "status",
    "dir",
  ];
  const body = rows.map((r) =>
    [
      String(r.rank),
      r.trial,
      ...keys.map((k) => (k in r.settings ? String(r.settings[k]) : "")),
      r.bestValLoss === null ? "" : String(r.bestValLoss),
      r.lastValLoss === null ? "" : String(r.lastValLoss),
      String(r.seconds),
      String(r.steps),
      r.charsPerSec === null ? "" : String(Math.round(r.charsPerSec)),
      String(r.rung),
      r.status,
      r.dir,
    ].map(quote),
  );
  return [head, ...body].map((r) => r.join(",")).join("\n") + "\n";
}

const COLORS = [
  "#4878d0",
  "#ee854a",
  "#6acc64",
  "#d65f5f",
  "#956cb4",
  "#8c613c",
  "#dc7ec0",
  "#797979",
  "#d5bb67",
  "#82c6e2",
];

/** Validation loss against training seconds, one line per trial (the legend lists the best ten). */
export function valLossSvg(state: SearchState, rows: ResultRow[]): string {
  const byId = new Map(state.trials.map((t) => [t.id, t]));
  const series = rows
    .filter((r) => (byId.get(r.trial)?.outcome?.curve.length ?? 0) > 0)
    .map((r, i) => ({
      label: i < 10 ? `${r.trial} ${num(r.bestValLoss, 3)}` : "",
      color: COLORS[i % COLORS.length],
      points: byId.get(r.trial)!.outcome!.curve,
    }));
  // Drawn worst first, so the best trials' lines lie on top.
  return lineChartSvg(series.reverse(), {
    title: `charlm tune: ${state.definition.strategy} search, ${state.trials.length} trial(s)`,
    xLabel: "training time (s)",
    yLabel: "validation loss (nats/char)",
    width: 640,
    height: 360,
  });
}

/** Write results.md, results.csv, results.json and val-loss.svg into the search directory. */
export async function writeReports(out: string, state: SearchState): Promise<ResultRow[]> {
  const rows = resultRows(state);
  const d = state.definition;
  const md = [
    `# charlm tune: ${d.strategy} search`,
    "",
    `Space: ${d.space.map((s) => `\`${s}\``).join(", ")}. Seed ${d.seed}.` +
      (d.budgets ? ` Budgets: ${d.budgets.join(", ")} ${d.budget === "time" ? "s" : "epoch(s)"}.` : ""),
    "",
    markdownTable(rows),
    "",
    "Validation loss in nats/char (lowest of the trial's evaluations); time is training time in all.",
    "",
  ].join("\n");
  await writeFileAtomic(path.join(out, "results.md"), md);
  await writeFileAtomic(path.join(out, "results.csv"), csvTable(rows));
  await writeFileAtomic(path.join(out, "results.json"), JSON.stringify(rows, null, 2) + "\n");
  await writeFileAtomic(path.join(out, "val-loss.svg"), valLossSvg(state, rows));
  return rows;
}
