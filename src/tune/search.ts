// The search: which trials run, with which settings and budgets, and the state file that lets a killed search pick
// up where it stopped.
//
//   random:  trials drawn from the space, each trained to one budget (or its config's own epochs and time limit),
//            until --trials have run or --time is spent.
//   halving: successive halving. Rung k gives each of its trials a budget of b·etaᵏ (training seconds, or epochs);
//            when every trial of a rung has ended, the best 1/eta by validation loss are promoted and resume from
//            their checkpoints with the next rung's budget, the rest stop there.
//
// Every trial is `charlm train` in a child process writing the run directory trials/NNN (the settings it adds to the
// shared config are in trials/NNN.json, its output in trials/NNN.log). `--jobs N` run at once, the cores split
// between them. tune.json (the space, the seed, the random generator's state, every trial's settings, state and
// results) is rewritten atomically after every event; re-running the same search finds it, resumes the trials that
// were running from their checkpoints and goes on.

import { availableParallelism } from "node:os";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../checkpoint/atomic.js";
import { lockDir, makeDir } from "../checkpoint/lock.js";
import { readManifest } from "../checkpoint/checkpoint.js";
import { resolveTrainConfig, type TrainConfig } from "../train/config.js";
import { CharlmError } from "../util/errors.js";
import { Rng, type RngState } from "../util/rng.js";
import { checkDistinct, formatDimension, parseSpaceArg, sample, type Dimension } from "./space.js";
import { readOutcome, startTrain, stopOrphan, type TrialOutcome, type TrialRun } from "./trial.js";

export type Strategy = "random" | "halving";
export type BudgetUnit = "time" | "epochs";

export interface TuneOptions {
  /** The search directory: tune.json, trials/, results.*, val-loss.svg. */
  out: string;
  /** The space: `key=spec` strings as --space takes them, or parsed dimensions. */
  space?: (string | Dimension)[];
  /** Settings every trial shares, over the preset and the config file (like `charlm train` flags). */
  fixed?: Partial<TrainConfig>;
  preset?: string;
  /** The contents of a --config file every trial starts from. */
  configFile?: Partial<TrainConfig>;
  strategy?: Strategy;
  /** Trials to run (halving: in the first rung). */
  trials?: number;
  /** Wall-clock seconds for the whole search. */
  timeSeconds?: number;
  /** Trials at once; the cores are split between them. */
  jobs?: number;
  /** Cores to split between the jobs (default: all). */
  cores?: number;
  budget?: BudgetUnit;
  /** Random: each trial's budget; halving: the first rung's (default: from --time, or 1 epoch). */
  trialBudget?: number;
  eta?: number;
  /** Halving: rungs (default: enough for the last to hold one trial). */
  rungs?: number;
  seed?: number;
  /** One line per event. */
  log?: (line: string) => void;
  /** Abort: running trials save a checkpoint and stop; the search can be resumed. */
  signal?: AbortSignal;
}

export type TrialState = "pending" | "running" | "done" | "failed";

export interface TrialRecord {
  id: string; // "001": the run directory is trials/001
  settings: Partial<TrainConfig>; // the point drawn from the space
  state: TrialState;
  rung: number; // halving: the rung it trains in (or reached); random: 0
  error: string | null;
  outcome: TrialOutcome | null;
  pid: number | null; // the trainer's process while it runs (a search killed with it running stops it when resumed)
}

/** What defines a search: a re-run must give the same (or nothing) to continue it. */
export interface SearchDefinition {
  strategy: Strategy;
  space: string[];
  preset: string | null;
  base: TrainConfig; // the config every trial starts from (default < preset < config file < fixed settings)
  seed: number;
  trials: number | null;
  budget: BudgetUnit;
  budgets: number[] | null; // per rung (random: one, or null for the config's own)
  eta: number;
}

export interface SearchState {
  format: "charlm-tune";
  version: 1;
  definition: SearchDefinition;
  rng: RngState;
  rung: number; // halving: the rung being trained
  elapsedSeconds: number; // wall time of the search's earlier sessions
  timeSeconds: number | null;
  jobs: number; // trials at once (the last session's, unless a re-run gives another)
  status: "running" | "finished" | "interrupted";
  trials: TrialRecord[];
}

export const STATE_FILE = "tune.json";
const MIN_LAUNCH_SECONDS = 1; // with less search time left than this, no trial starts

export interface SearchResult {
  state: SearchState;
  status: "finished" | "interrupted";
}

/** Run (or continue) a search. */
export async function runSearch(o: TuneOptions): Promise<SearchResult> {
  if (o.space?.length) defineSearch(o); // a bad space fails before anything is written
  await makeDir(o.out);
  const lock = await lockDir(o.out);
  try {
    return await searchLocked(o);
  } finally {
    lock.release();
  }
}

export function defineSearch(o: TuneOptions): SearchDefinition {
  const strategy = o.strategy ?? "random";
  const dims = (o.space ?? []).map((d) => (typeof d === "string" ? parseSpaceArg(d) : d));
  checkDistinct(dims);
  const budget = o.budget ?? "time";
  const eta = o.eta ?? 3;
  if (!(eta >= 2)) throw new CharlmError(`--eta ${eta}: keep the best 1/eta of each rung with eta at least 2`);
  for (const d of dims) {
    if (budget === "epochs" && d.key === "epochs" && (strategy === "halving" || o.trialBudget)) {
      throw new CharlmError(
        `--space ${formatDimension(d)}: the search sets epochs as the budget; drop it from the space`,
      );
    }
    if (budget === "time" && d.key === "timeLimit" && (strategy === "halving" || o.trialBudget)) {
      throw new CharlmError(`--space ${formatDimension(d)}: the search sets the time limit as the budget; drop it`);
    }
  }
  // Samples cost trial time and clutter the logs; a search prints none unless asked.
  const base = resolveTrainConfig({
    preset: o.preset,
    file: o.configFile,
    overrides: { sampleLength: 0, ...o.fixed },
  });
  const trials = o.trials ?? (o.timeSeconds ? null : strategy === "halving" ? eta ** 2 : 10);
  if (trials === null && strategy === "halving") {
    throw new CharlmError(`--strategy halving needs --trials N (the first rung's size)`);
  }
  let budgets: number[] | null = null;
  if (strategy === "halving") {
    const rungs = o.rungs ?? Math.max(1, Math.floor(Math.log(trials!) / Math.log(eta) + 1e-9) + 1);
    let first = o.trialBudget;
    if (first === undefined) {
      if (budget === "epochs") first = 1;
      else if (o.timeSeconds) {
        // Rung 0 trains n trials for b seconds; each later rung n/etaᵏ trials for the b·etaᵏ(1 - 1/eta) seconds
        // their budget grows by. Fit that into the search time on --jobs cores, with a fifth kept for start-up
        // and evaluation.
        const jobs = o.jobs ?? 1;
        first = (0.8 * o.timeSeconds * jobs) / (trials! * (1 + (rungs - 1) * (1 - 1 / eta)));
        first = Number(first.toPrecision(3));
      } else {
        throw new CharlmError(`--strategy halving with --budget time needs --trial-budget SECONDS or --time`);
      }
    }
    budgets = Array.from({ length: rungs }, (_, k) =>
      budget === "epochs" ? Math.round(first! * eta ** k) : Number((first! * eta ** k).toPrecision(4)),
    );
  } else if (o.trialBudget !== undefined) {
    budgets = [o.trialBudget];
  }
  if (budget === "epochs" && budgets && budgets.some((b) => !Number.isInteger(b) || b < 1)) {
    throw new CharlmError(`--trial-budget ${o.trialBudget}: an epochs budget is a whole number of epochs, at least 1`);
  }
  return {
    strategy,
    space: dims.map(formatDimension),
    preset: o.preset ?? null,
    base,
    seed: o.seed ?? 1,
    trials,
    budget,
    budgets,
    eta,
  };
}

async function loadState(file: string): Promise<SearchState | null> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch {
    return null;
  }
  try {
    const s = JSON.parse(text) as SearchState;
    if (s.format !== "charlm-tune" || s.version !== 1) throw new Error("format");
    return s;
  } catch {
    throw new CharlmError(`${file}: not a charlm search state; pick another --out or remove the file`);
  }
}

async function searchLocked(o: TuneOptions): Promise<SearchResult> {
  const log = o.log ?? (() => {});
  const file = path.join(o.out, STATE_FILE);
  const saved = await loadState(file);
  let state: SearchState;
  if (saved) {
    // A re-run with no space continues the search as it was defined; one with a space must define the same.
    if (o.space?.length) {
      const def = defineSearch(o);
      if (JSON.stringify(def) !== JSON.stringify(saved.definition)) {
        throw new CharlmError(
          `${file}: holds a search with other settings (${saved.definition.strategy}, space ${saved.definition.space.join(" ")}); to continue it run 'charlm tune --out ${o.out}' with the same settings or none, or pick another --out`,
        );
      }
    }
    state = {
      ...saved,
      status: "running",
      timeSeconds: o.timeSeconds ?? saved.timeSeconds,
      jobs: o.jobs ?? saved.jobs,
    };
    const done = state.trials.filter((t) => t.state === "done" || t.state === "failed").length;
    log(`continuing the search in ${o.out}: ${done} of ${state.trials.length} trial(s) ended before`);
  } else {
    if (!o.space?.length) {
      throw new CharlmError(
        `${o.out} holds no search yet; give a space, e.g. --space lr=log:1e-4:1e-2 --space units=128,256`,
      );
    }
    const definition = defineSearch(o);
    state = {
      format: "charlm-tune",
      version: 1,
      definition,
      rng: new Rng(definition.seed).getState(),
      rung: 0,
      elapsedSeconds: 0,
      timeSeconds: o.timeSeconds ?? null,
      jobs: o.jobs ?? 1,
      status: "running",
      trials: [],
    };
    const parts = [
      `${definition.trials ?? "as many"} trial(s)`,
      state.timeSeconds ? `within ${state.timeSeconds} s` : "",
      definition.budgets ? `budgets ${definition.budgets.join(", ")}${unitOf(definition)}` : "",
    ];
    log(
      `search in ${o.out}: ${definition.strategy}, ${parts.filter(Boolean).join(", ")}; space ${definition.space.join(" ")}`,
    );
  }
  await makeDir(path.join(o.out, "trials"));
  await writeFileAtomic(file, JSON.stringify(state, null, 2) + "\n");

  const def = state.definition;
  const dims = def.space.map(parseSpaceArg);
  const rng = new Rng(state.rng);
  const jobs = Math.max(1, state.jobs);
  const threads = Math.max(1, Math.floor((o.cores ?? availableParallelism()) / jobs));
  const session0 = performance.now();
  const searchSeconds = (): number => state.elapsedSeconds + (performance.now() - session0) / 1000;
  const timeLeft = (): number => (state.timeSeconds ? state.timeSeconds - searchSeconds() : Infinity);
  const save = async (): Promise<void> => {
    state.rng = rng.getState();
    await writeFileAtomic(file, JSON.stringify({ ...state, elapsedSeconds: searchSeconds() }, null, 2) + "\n");
  };
  const stamp = (): string => `[tune ${Math.round(searchSeconds())}s]`;
  const dirOf = (t: TrialRecord): string => path.join(o.out, "trials", t.id);
  const shown = (t: TrialRecord): string =>
    Object.entries(t.settings)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(" ");
  const unit = unitOf(def);

  const active = new Map<string, { trial: TrialRecord; run: TrialRun; ended: Promise<string> }>();

  /** The training seconds a trial's current budget allows (its time budget, else its config's limit; 0 = none). */
  const seconds = (t: TrialRecord): number => {
    const b = def.budgets?.[t.rung];
    return def.budget === "time" && b !== undefined ? b : def.base.timeLimit;
  };
  /** Whether a trial has trained as far as its current budget asks (or can go no further). */
  const reached = (t: TrialRecord, out: TrialOutcome): boolean => {
    const b = def.budgets?.[t.rung];
    if (out.runStatus === "early-stopped") return true;
    if (def.budget === "epochs" && b !== undefined) return out.epochs >= b;
    if (out.runStatus === "finished") return true;
    return out.runStatus === "time-limit" && seconds(t) > 0 && out.seconds >= seconds(t);
  };
  /** A run that stopped early, or (time budgets) trained all its epochs, can train no further. */
  const over = (out: TrialOutcome | null): boolean =>
    out?.runStatus === "early-stopped" || (def.budget === "time" && out?.runStatus === "finished");

  const launch = async (t: TrialRecord): Promise<void> => {
    const dir = dirOf(t);
    await stopOrphan(dir, t.pid); // a trainer a killed search left running
    const before = await readOutcome(dir);
    if (before.runStatus !== null && reached(t, before)) {
      // It ended while the search was not watching (killed between the trial's end and the state write).
      t.state = "done";
      t.outcome = before;
      log(`${stamp()} trial ${t.id} had ended: ${describeOutcome(before)}`);
      await save();
      return;
    }
    const resumed = before.runStatus !== null;
    const b = def.budgets?.[t.rung];
    const args: string[] = resumed
      ? ["--resume", dir]
      : ["--config", path.join(o.out, "trials", `${t.id}.json`), "--out", dir];
    if (!resumed && def.preset) args.push("--preset", def.preset);
    // The time a trial may train: its budget, and never past the end of the search.
    const limit = Math.min(seconds(t) || Infinity, before.seconds + timeLeft());
    if (Number.isFinite(limit)) args.push("--time-limit", String(Number(limit.toFixed(3))));
    if (def.budget === "epochs" && b !== undefined) args.push("--epochs", String(b));
    args.push("--threads", String(threads), "--quiet");
    if (!resumed) {
      await writeFileAtomic(
        path.join(o.out, "trials", `${t.id}.json`),
        JSON.stringify(
          resolveTrainConfig({ preset: def.preset ?? undefined, file: { ...def.base, ...t.settings } }),
          null,
          2,
        ) + "\n",
      );
    }
    t.state = "running";
    const what = b === undefined ? "" : ` rung ${t.rung + 1}, budget ${b}${unit}`;
    log(`${stamp()} trial ${t.id} ${resumed ? "resumes" : "starts"}${what}: ${shown(t)}`);
    const run = startTrain(args, path.join(o.out, "trials", `${t.id}.log`));
    t.pid = run.pid;
    await save();
    active.set(t.id, { trial: t, run, ended: run.done.then(() => t.id) });
  };

  const finish = async (id: string): Promise<void> => {
    const { trial: t, run } = active.get(id)!;
    active.delete(id);
    const { code, lastError } = await run.done;
    t.pid = null;
    const out = await readOutcome(dirOf(t));
    t.outcome = out;
    if (o.signal?.aborted && (code === 130 || code === 143)) {
      log(`${stamp()} trial ${t.id} stopped (checkpoint saved; it resumes with the search)`);
    } else if (code !== 0) {
      t.state = "failed";
      t.error = lastError.replace(/^charlm train: /, "") || `exit code ${code}`;
      log(`${stamp()} trial ${t.id} failed: ${t.error}`);
    } else {
      t.state = "done";
      log(`${stamp()} trial ${t.id} ${describeOutcome(out)}`);
    }
    await save();
  };

  const newTrial = async (): Promise<TrialRecord> => {
    const t: TrialRecord = {
      id: String(state.trials.length + 1).padStart(3, "0"),
      settings: sample(dims, rng),
      state: "pending",
      rung: state.rung,
      error: null,
      outcome: null,
      pid: null,
    };
    state.trials.push(t);
    await save();
    return t;
  };

  /** The next trial to start, or null to wait for the running ones (or to end, when none run). */
  const next = async (): Promise<TrialRecord | null> => {
    if (timeLeft() < MIN_LAUNCH_SECONDS) return null;
    // Trials a killed session left running or waiting come first, in order.
    const waiting = state.trials.find((t) => (t.state === "pending" || t.state === "running") && !active.has(t.id));
    if (waiting) return waiting;
    if (def.strategy === "random") {
      return def.trials === null || state.trials.length < def.trials ? newTrial() : null;
    }
    if (state.rung === 0 && state.trials.length < def.trials!) return newTrial();
    if (active.size > 0) return null; // the rung is still training
    if (state.rung + 1 >= def.budgets!.length) return null;
    // The rung has ended: promote its best 1/eta.
    const members = state.trials.filter((t) => t.rung === state.rung);
    const ranked = members
      .filter((t) => t.state === "done" && t.outcome?.bestValLoss != null)
      .sort((a, b) => a.outcome!.bestValLoss! - b.outcome!.bestValLoss!);
    const keep = ranked.slice(0, Math.max(1, Math.floor(members.length / def.eta)));
    if (keep.length === 0) return null;
    state.rung++;
    for (const t of keep) {
      t.rung = state.rung;
      t.state = over(t.outcome) ? "done" : "pending"; // one that can go no further keeps its result
    }
    log(
      `${stamp()} rung ${state.rung} ended: ${keep.map((t) => t.id).join(", ")} promoted to rung ${state.rung + 1} (budget ${def.budgets![state.rung]}${unit}) of ${members.length}`,
    );
    await save();
    return next();
  };

  let status: "finished" | "interrupted" = "finished";
  const aborted = o.signal ? [abortPromise(o.signal)] : [];
  for (;;) {
    if (o.signal?.aborted) {
      status = "interrupted";
      break;
    }
    while (active.size < jobs && !o.signal?.aborted) {
      const t = await next();
      if (!t) break;
      await launch(t);
    }
    if (active.size === 0) {
      if (o.signal?.aborted) status = "interrupted";
      break;
    }
    const ended = await Promise.race([...[...active.values()].map((a) => a.ended), ...aborted]);
    if (ended === ABORTED) {
      for (const a of active.values()) a.run.stop();
      for (const id of [...active.keys()]) await finish(id);
      status = "interrupted";
      break;
    }
    await finish(ended);
  }
  state.status = status;
  await save();
  return { state: { ...state, elapsedSeconds: searchSeconds() }, status };
}

const ABORTED = "\0aborted";

const unitOf = (def: SearchDefinition): string => (def.budget === "time" ? " s" : " epoch(s)");

function abortPromise(signal: AbortSignal): Promise<string> {
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(ABORTED), { once: true }));
}

export function describeOutcome(out: TrialOutcome): string {
  const val = out.bestValLoss === null ? "no validation loss" : `val ${out.bestValLoss.toFixed(4)}`;
  const speed = out.charsPerSec === null ? "" : `, ${Math.round(out.charsPerSec).toLocaleString("en-US")} chars/s`;
  return `${out.runStatus ?? "ended"}: ${val} after ${out.seconds.toFixed(1)} s, ${out.steps} steps${speed}`;
}

/** The full config a trial trained with (its manifest's, else the one it was given). */
export async function trialConfig(out: string, t: TrialRecord): Promise<TrainConfig> {
  const m = await readManifest(path.join(out, "trials", t.id)).catch(() => null);
  if (m?.train) return m.train;
  const text = await fs.readFile(path.join(out, "trials", `${t.id}.json`), "utf8");
  return JSON.parse(text) as TrainConfig;
}
