// Random SIGKILLs against training, for every cell and batching style: `npm run bench -- kill_resume [kills]`.
// Each run (saving every step) is killed at seeded random moments, resumed each time, and at the end compared
// bit for bit with an uninterrupted run: the weights and the metrics log (timings aside). The tests kill once per
// style; this kills many times, at moments no test picks. Prints one line per style and exits 1 on any mismatch.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng } from "../src/util/rng.js";

const VERSE = "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n";

/** Run `charlm train ARGS` until it exits, or kill it after `killAfterMs`; its exit code, null when killed. */
function train(args: string[], killAfterMs: number | null): Promise<{ code: number | null; err: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "train", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const timer = killAfterMs === null ? null : setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  return new Promise((resolve) =>
    child.once("exit", (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, err });
    }),
  );
}

const withoutTimes = (file: string): string =>
  readFileSync(file, "utf8").replace(/"(time|charsPerSec|seconds)":[\d.e+-]+/g, "");

export async function main(args: string[]): Promise<void> {
  const killsPerStyle = Number(args[0] ?? 8);
  const work = mkdtempSync(join(tmpdir(), "charlm-kill-"));
  const corpus = join(work, "verse.txt");
  writeFileSync(corpus, VERSE.repeat(40));
  const rng = new Rng(1);
  let total = 0;
  let failed = false;
  try {
    for (const cell of ["lstm", "gru", "rnn"]) {
      for (const batching of ["windows", "stream"]) {
        const common = [
          ...["--data", corpus, "--preset", "tiny", "--embedding", "8", "--units", "12", "--seq-length", "16"],
          ...["--batch-size", "4", "--steps-per-epoch", "60", "--epochs", "8", "--save-every", "1", "--log-every", "1"],
          ...["--sample-length", "0", "--quiet", "--cell", cell, "--batching", batching],
          ...["--dropout", batching === "stream" ? "0" : "0.2"],
        ];
        const whole = join(work, `${cell}-${batching}-whole`);
        const ref = await train([...common, "--out", whole], null);
        if (ref.code !== 0) throw new Error(`the uninterrupted ${cell}/${batching} run failed: ${ref.err}`);
        const dir = join(work, `${cell}-${batching}`);
        let kills = 0;
        let problem = "";
        for (;;) {
          const started = existsSync(join(dir, "charlm.json"));
          const delay = kills < killsPerStyle ? 500 + rng.int(1100) : null; // 0.5-1.6 s: startup to mid-run
          const r = await train(started ? ["--resume", dir] : [...common, "--out", dir], delay);
          if (r.code === null) {
            kills++;
            continue;
          }
          if (r.code !== 0) problem = `a resumed process exited ${r.code}: ${r.err.trim()}`;
          break;
        }
        total += kills;
        const sameWeights = readFileSync(join(dir, "model.safetensors")).equals(
          readFileSync(join(whole, "model.safetensors")),
        );
        const sameLog = withoutTimes(join(dir, "metrics.jsonl")) === withoutTimes(join(whole, "metrics.jsonl"));
        if (problem || !sameWeights || !sameLog) failed = true;
        console.log(
          `${cell}/${batching}: ${kills} kills; weights ${sameWeights ? "identical" : "DIFFER"}, ` +
            `metrics ${sameLog ? "identical" : "DIFFER"}${problem ? `; ${problem}` : ""}`,
        );
      }
    }
    console.log(
      `${total} kills in all${failed ? "; MISMATCH" : ", every run bit-identical to its uninterrupted twin"}`,
    );
    if (failed) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
