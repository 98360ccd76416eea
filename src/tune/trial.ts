// One trial of a search: a `charlm train` child process writing a normal run directory (resumable, samplable), and
// what the search reads back from that directory when it ends (the manifest and metrics.jsonl, not the child's
// output, so a search resumed after a kill reads a trial that ended while nobody was watching the same way).

import { spawn } from "node:child_process";
import { createWriteStream, promises as fs } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { readManifest, type RunStatus } from "../checkpoint/checkpoint.js";
import { lockHolder } from "../checkpoint/lock.js";

/** The command that runs charlm's CLI: the compiled one (dist/) or, in development, the TypeScript source via tsx. */
export function cliCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  const ts = here.endsWith(".ts");
  const main = path.join(path.dirname(here), "..", "cli", ts ? "main.ts" : "main.js");
  return [process.execPath, ...(ts ? ["--import", "tsx"] : []), main];
}

export interface TrialRun {
  pid: number | null;
  /** Exit code of the child (143 when stopped by SIGTERM: it saved a checkpoint first). */
  done: Promise<{ code: number; lastError: string }>;
  /** Ask the child to save and stop. */
  stop(): void;
}

/** Start `charlm train ARGS`, its output appended to `logFile`. */
export function startTrain(args: string[], logFile: string): TrialRun {
  const [cmd, ...pre] = cliCommand();
  const child = spawn(cmd, [...pre, "train", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(logFile, { flags: "a" });
  log.write(`$ charlm train ${args.join(" ")}\n`);
  let lastError = "";
  child.stdout.pipe(log, { end: false });
  child.stderr.on("data", (chunk: Buffer) => {
    log.write(chunk);
    const lines = chunk
      .toString("utf8")
      .split("\n")
      .filter((l) => l.trim());
    // The CLI's own one-line error, else a crash's first "...Error: ..." line (a stack's last line says only the
    // Node version), else the last line written.
    for (const l of lines) {
      if (/^charlm /.test(l)) lastError = l;
      else if (!/^charlm /.test(lastError) && !/Error\b/.test(lastError) && /Error\b/.test(l)) lastError = l;
    }
    if (lines.length && !/^charlm |Error\b/.test(lastError)) lastError = lines[lines.length - 1];
  });
  const done = new Promise<{ code: number; lastError: string }>((resolve) => {
    child.on("error", (err) => {
      lastError = err.message;
    });
    child.on("close", (code, signal) => {
      log.end(() => resolve({ code: code ?? (signal === "SIGKILL" ? 137 : 143), lastError }));
    });
  });
  return { pid: child.pid ?? null, done, stop: () => child.kill("SIGTERM") };
}

/**
 * A trainer left running by a search that was killed (SIGKILL leaves its children alive): ask it to save and stop,
 * and wait until it has gone, so the search can resume the run itself. It is found by the process id the search
 * recorded when it started it, and by the run directory's lock (the recorded one may not have taken it yet).
 */
export async function stopOrphan(dir: string, recorded: number | null): Promise<void> {
  const pids = new Set([recorded, await lockHolder(dir)].filter((p): p is number => p !== null && p !== process.pid));
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const pid of pids) {
    if (!alive(pid)) continue;
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      continue;
    }
    for (let i = 0; i < 600 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  }
}

/** What a trial's run directory says about it. */
export interface TrialOutcome {
  runStatus: RunStatus | null; // the manifest's status; null when no checkpoint was written
  steps: number;
  epochs: number;
  seconds: number; // training time in all (the manifest's elapsedSeconds)
  bestValLoss: number | null; // lowest validation loss of any evaluation (epoch ends and the time-limit stop)
  lastValLoss: number | null;
  charsPerSec: number | null; // mean training speed over the logged steps
  curve: [number, number][]; // (training seconds, validation loss) of every evaluation
}

export async function readOutcome(dir: string): Promise<TrialOutcome> {
  const m = await readManifest(dir).catch(() => null);
  const text = await fs.readFile(path.join(dir, "metrics.jsonl"), "utf8").catch(() => "");
  const curve: [number, number][] = [];
  let speed = 0;
  let speeds = 0;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let rec: { type?: string; step?: number; valLoss?: number; time?: number; charsPerSec?: number };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue; // a line cut short by a kill
    }
    if (m && (rec.step ?? 0) > m.step) continue; // written after the checkpoint: a resume drops it
    if ((rec.type === "epoch" || rec.type === "eval") && typeof rec.valLoss === "number") {
      curve.push([rec.time ?? 0, rec.valLoss]);
    }
    if (rec.type === "step" && typeof rec.charsPerSec === "number" && Number.isFinite(rec.charsPerSec)) {
      speed += rec.charsPerSec;
      speeds++;
    }
  }
  const losses = curve.map(([, v]) => v).filter(Number.isFinite);
  return {
    runStatus: m?.status ?? null,
    steps: m?.step ?? 0,
    epochs: m?.epoch ?? 0,
    seconds: m?.elapsedSeconds ?? 0,
    bestValLoss: losses.length ? Math.min(...losses) : null,
    lastValLoss: losses.length ? losses[losses.length - 1] : null,
    charsPerSec: speeds ? speed / speeds : null,
    curve,
  };
}
