// `npm run bench -- activations [--n N] [--reps R]`
//
// The elementwise nonlinearities on one thread, forward (y = f(x)) and backward (dx += g·f'(x)): charlm's wasm
// kernels (the relaxed build where Node validates it) against PyTorch's CPU ones (torch.set_num_threads(1); gelu with
// approximate="tanh", the formula charlm uses; the backward through torch.autograd.grad), on the same N values
// (default 2^21, the size of a GPT step's MLP activation at batch 32, block 128, 4 x 128 channels) spread over
// [-8, 8]. Each figure is the median CPU time of R calls (default 15) after warm-up, as ns per element; the ratio is
// PyTorch's time over charlm's (above 1: charlm is faster). These run inside every LSTM/GRU step (sigmoid, tanh)
// and every GPT block (gelu).

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import type { UnaryOp } from "../src/engine/backend.js";
import { WASM_RELAXED_URL, WASM_URL, createWasmBackend } from "../src/engine/backends/wasm.js";

const OPS: UnaryOp[] = ["gelu", "tanh", "sigmoid", "exp"];

const TORCH = String.raw`
import json, sys, time
import torch
torch.set_num_threads(1)
n, reps = int(sys.argv[1]), int(sys.argv[2])
x = (torch.arange(n, dtype=torch.float32) % 2000) / 125 - 8
g = (torch.arange(n, dtype=torch.float32) % 100) / 100
fs = {"gelu": lambda t: torch.nn.functional.gelu(t, approximate="tanh"), "tanh": torch.tanh,
      "sigmoid": torch.sigmoid, "exp": torch.exp}
out = {}
for name, f in fs.items():
    fwd, bwd = [], []
    xr = x.clone().requires_grad_(True)
    for r in range(reps + 3):
        t0 = time.process_time()
        with torch.no_grad():
            f(x)
        t1 = time.process_time()
        y = f(xr)
        t2 = time.process_time()
        torch.autograd.grad(y, xr, g)
        t3 = time.process_time()
        if r >= 3:
            fwd.append(t1 - t0)
            bwd.append(t3 - t2)
    fwd.sort(); bwd.sort()
    out[name] = [fwd[len(fwd) // 2], bwd[len(bwd) // 2]]
print(json.dumps({"torch": torch.__version__, "times": out}))
`;

/** What the PyTorch child prints: its version and, per op, the median forward and backward CPU seconds. */
interface TorchTimes {
  torch: string;
  times: Record<string, [number, number]>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** CPU seconds of f: user + system time of this process (the waits of a preempted call not counted). */
function cpuSeconds(f: () => void): number {
  const c0 = process.cpuUsage();
  f();
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1e6;
}

export async function main(args: string[]): Promise<void> {
  const opt = (name: string, fallback: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const n = opt("--n", 2 ** 21);
  const reps = opt("--reps", 15);
  if (!(Number.isInteger(n) && n > 0 && Number.isInteger(reps) && reps > 0))
    throw new Error(`--n ${n} --reps ${reps}: use positive whole numbers`);
  // the relaxed build, as the library runs it (on Node 20 with V8's --experimental-wasm-relaxed-simd, which the
  // library also switches on at run time)
  const relaxed = readFileSync(WASM_RELAXED_URL);
  if (!WebAssembly.validate(relaxed)) setFlagsFromString("--experimental-wasm-relaxed-simd");
  const relaxedOk = WebAssembly.validate(relaxed);
  const be = await createWasmBackend(relaxedOk ? relaxed : readFileSync(WASM_URL));
  const xs = Float32Array.from({ length: n }, (_, i) => (i % 2000) / 125 - 8);
  const gs = Float32Array.from({ length: n }, (_, i) => (i % 100) / 100);
  const [x, y, g, dx] = [be.alloc(n), be.alloc(n), be.alloc(n), be.alloc(n)];
  be.write(x, xs);
  be.write(g, gs);
  const ours = new Map<UnaryOp, [number, number]>();
  for (const op of OPS) {
    const fwd: number[] = [];
    const bwd: number[] = [];
    for (let r = 0; r < reps + 3; r++) {
      const tf = cpuSeconds(() => be.unary(op, x, y, n));
      const tb = cpuSeconds(() => be.unaryBackward(op, x, y, g, dx, n));
      if (r >= 3) {
        fwd.push(tf);
        bwd.push(tb);
      }
    }
    ours.set(op, [median(fwd), median(bwd)]);
  }
  let theirs: TorchTimes | null = null;
  try {
    const out = execFileSync("/usr/bin/python3", ["-c", TORCH, String(n), String(reps)], { encoding: "utf8" });
    theirs = JSON.parse(out.trim().split("\n").pop()!) as TorchTimes;
  } catch (e) {
    console.log(`PyTorch: not run (${(e as Error).message.split("\n")[0]})`);
  }
  const ns = (s: number) => ((s * 1e9) / n).toFixed(2).padStart(6);
  console.log(
    `activations on one thread, ${n} values, median CPU time of ${reps} calls, ns per element ` +
      `(charlm wasm${relaxedOk ? ", relaxed build" : ""}${theirs ? `; PyTorch ${theirs.torch}` : ""})`,
  );
  console.log("op        charlm fwd  bwd   | PyTorch fwd  bwd   | ratio fwd  bwd");
  for (const op of OPS) {
    const [f, b] = ours.get(op)!;
    const t = theirs?.times[op];
    const ratio = t ? `${(t[0] / f).toFixed(2).padStart(9)} ${(t[1] / b).toFixed(2).padStart(5)}` : "";
    console.log(
      `${op.padEnd(9)} ${ns(f)}     ${ns(b)} | ${t ? `${ns(t[0])}      ${ns(t[1])}` : "   -           -  "} |${ratio}`,
    );
  }
}
