// Helpers for the quality benchmarks that drive the charlm CLI in child processes (tokenizers.ts, fine_tune.ts):
// train for a wall-time budget (SIGTERM then, which makes `charlm train` save a checkpoint), evaluate, sample.
// Children run under `nice -n 10` so a shared machine's other work keeps its share.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface Finished {
  code: number | null;
  out: string;
  err: string;
  seconds: number;
}

/** Run `charlm ARGS`; with `budgetSeconds`, send SIGTERM once that much wall time has passed. */
export function charlm(args: string[], budgetSeconds: number | null = null): Promise<Finished> {
  const t0 = performance.now();
  const child = spawn("nice", ["-n", "10", process.execPath, "--import", "tsx", "src/cli/main.ts", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const timer = budgetSeconds === null ? null : setTimeout(() => child.kill("SIGTERM"), budgetSeconds * 1000);
  return new Promise((resolve) =>
    child.once("exit", (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, out, err, seconds: (performance.now() - t0) / 1000 });
    }),
  );
}

/** Run the jobs `parallel` at a time, in order; results in the jobs' order. */
export async function pool<T>(jobs: (() => Promise<T>)[], parallel: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, worker));
  return results;
}

export interface EvalJson {
  nats: number;
  natsPerChar: number;
  bitsPerChar: number;
  chars: number;
  textChars: number;
  unknownShare: number;
  tokenizer: string;
}

/** `charlm eval --json` on a split; throws with the child's error text when it fails. */
export async function evalRun(dir: string, split: string, extra: string[] = []): Promise<EvalJson> {
  const r = await charlm(["eval", "--model", dir, "--split", split, "--json", ...extra]);
  if (r.code !== 0) throw new Error(`charlm eval ${dir}: ${r.err}`);
  return JSON.parse(r.out.trim().split("\n").pop()!) as EvalJson;
}

/** A sample of `length` tokens from a fixed seed. */
export async function sampleRun(dir: string, length: number, extra: string[] = []): Promise<string> {
  const r = await charlm(["sample", "--model", dir, "--length", String(length), "--seed", "1", ...extra]);
  if (r.code !== 0) throw new Error(`charlm sample ${dir}: ${r.err}`);
  return r.out;
}

/** Steps and the tokenizer's description from a checkpoint's manifest. */
export function manifestFacts(dir: string): { step: number; vocabSize: number; kind: string } {
  const m = JSON.parse(readFileSync(join(dir, "charlm.json"), "utf8")) as {
    step: number;
    model: { vocabSize: number };
    tokenizer: { kind: string };
  };
  return { step: m.step, vocabSize: m.model.vocabSize, kind: m.tokenizer.kind };
}

/** `--name value` from an argument list, or the fallback. */
export function option(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}
