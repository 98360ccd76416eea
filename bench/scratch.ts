// The from-scratch RNN against the same recipe in NumPy (bench/scratch_numpy.py), one after the other in the same
// process tree: training time, final smoothed loss and validation loss of each, and the time ratio.
//
//   npm run bench -- scratch                         # 2000 iterations on Tiny Shakespeare (about a minute)
//   npm run bench -- scratch --epochs 5              # the measurement: 5 passes over the TFDS train split
//   npm run bench -- scratch --iterations 5000 --no-numpy

import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags } from "../src/cli/flags.js";
import { loadSplits, TINY_SHAKESPEARE, codePointLength, Vocab } from "../src/data/index.js";
import { ScratchRNN } from "../src/scratch/rnn.js";
import { ScratchTrainer, trainLoop, DEFAULT_SCRATCH_CONFIG } from "../src/scratch/train.js";
import { Rng } from "../src/util/rng.js";

const schema = {
  data: { type: "string", help: "tinyshakespeare or a text file", default: "tinyshakespeare" },
  iterations: { type: "int", help: "updates (0: use --epochs)", default: 2000, min: 0 },
  epochs: { type: "int", help: "passes over the train split (overrides --iterations)", min: 1 },
  hidden: { type: "int", help: "hidden size", default: 100, min: 1 },
  seqLength: { type: "int", help: "characters per update", default: 25, min: 1 },
  seed: { type: "int", help: "random seed", default: 42 },
  numpy: { type: "bool", help: "also run the NumPy reference", default: true },
  python: { type: "string", help: "python with numpy", default: "/usr/bin/python3" },
} as const;

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(args, schema, "bench scratch");
  const splits = await loadSplits(f.data);
  const limit = f.epochs !== undefined ? { epochs: f.epochs } : { iterations: f.iterations };
  console.log(`scratch RNN bench: ${splits.name}, hidden ${f.hidden}, seq ${f.seqLength}, ${JSON.stringify(limit)}`);

  // ---- TypeScript
  const vocab = Vocab.build(splits.text);
  const rng = new Rng(f.seed);
  const model = new ScratchRNN(vocab.size, f.hidden, rng);
  const config = { ...DEFAULT_SCRATCH_CONFIG, hidden: f.hidden, seqLength: f.seqLength };
  const trainer = new ScratchTrainer(model, vocab.encode(splits.train), config);
  let t0 = performance.now();
  let lastLog = t0;
  await trainLoop(trainer, {
    ...limit,
    rng,
    onStep: () => {
      const now = performance.now();
      if (now - lastLog > 30_000) {
        lastLog = now;
        const s = trainer.state;
        console.error(
          `ts iter ${s.iteration} smooth loss ${s.smoothLoss.toFixed(3)} (${((now - t0) / 1000).toFixed(0)}s)`,
        );
      }
    },
  });
  const tsSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const tsVal = model.evaluate(vocab.encode(splits.validation));
  const tsValSeconds = (performance.now() - t0) / 1000;
  const ts = {
    seconds: tsSeconds,
    iterations: trainer.state.iteration,
    epochs: trainer.epochsDone(),
    smooth_loss: trainer.state.smoothLoss,
    val_loss: tsVal,
    val_seconds: tsValSeconds,
  };
  report("typescript", ts, f.seqLength);

  // ---- NumPy, with the same data ranges (code points, which Python's str indexes by)
  if (!f.numpy) return;
  const file = f.data === "tinyshakespeare" ? await tinyShakespearePath() : f.data;
  const trainLen = codePointLength(splits.train);
  const valLen = codePointLength(splits.validation);
  const trainRange = f.data === "tinyshakespeare" ? TINY_SHAKESPEARE.splits.train : [0, trainLen];
  const valRange = f.data === "tinyshakespeare" ? TINY_SHAKESPEARE.splits.validation : [trainLen, trainLen + valLen];
  const script = join(dirname(fileURLToPath(import.meta.url)), "scratch_numpy.py");
  const pyArgs = [script, "--file", file, "--train", trainRange.join(":"), "--val", valRange.join(":")];
  pyArgs.push("--hidden", String(f.hidden), "--seq-length", String(f.seqLength), "--seed", String(f.seed));
  pyArgs.push(...(f.epochs !== undefined ? ["--epochs", String(f.epochs)] : ["--iterations", String(f.iterations)]));
  const np = JSON.parse(await runPython(f.python, pyArgs)) as typeof ts;
  report("numpy", np, f.seqLength);
  console.log(
    `time ratio typescript/numpy: ${(ts.seconds / np.seconds).toFixed(2)}  (per update: ts ${((ts.seconds / ts.iterations) * 1e3).toFixed(3)} ms, numpy ${((np.seconds / np.iterations) * 1e3).toFixed(3)} ms)`,
  );
}

function report(name: string, r: Record<string, number>, T: number): void {
  console.log(
    `${name.padEnd(10)} ${r.iterations} updates (${r.epochs} epochs) in ${r.seconds.toFixed(1)}s; ` +
      `smooth loss ${(r.smooth_loss / T).toFixed(3)} nats/char; validation ${r.val_loss.toFixed(4)} nats/char ` +
      `(${(r.val_loss / Math.LN2).toFixed(4)} bits/char, evaluated in ${r.val_seconds.toFixed(1)}s)`,
  );
}

/** The file the TS loader used, so NumPy reads the same bytes. */
async function tinyShakespearePath(): Promise<string> {
  const ts = await import("../src/data/tinyshakespeare.js");
  const loaded = await ts.loadTinyShakespeare({ quiet: true });
  return loaded.source.startsWith("download ") ? join(ts.defaultCacheDir(), "tinyshakespeare.txt") : loaded.source;
}

function runPython(python: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" },
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(out.trim().split("\n").pop()!) : reject(new Error(`${python} exited with ${code}`)),
    );
  });
}
