// Causal multi-head self-attention, forward and backward, charlm's wasm kernels against PyTorch on the same shapes.
//
//   npm run bench -- attention [--reps R] [--shape B,T,C,NH]...
//     The GPT bench's shape (batch 32, block 128, 128 channels, 4 heads; `npm run bench -- train --only 3`) and a
//     larger one (batch 8, block 256, 384 channels, 6 heads) unless --shape says otherwise. Each side times its
//     forward and its backward (the gradients of q, k and v) R times after a warm-up and keeps the best time; charlm
//     on one thread and at its default threads, PyTorch (bench/attention_torch.py, a child process) pinned to one
//     thread and at its default, and the ratios (PyTorch's time over charlm's: above 1, charlm is faster).

import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { createWasmBackend, type WasmStorage } from "../src/engine/backends/wasm/index.js";
import type { Backend } from "../src/engine/backend.js";
import { Rng } from "../src/util/rng.js";

const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = "/usr/bin/python3";

type Shape = [B: number, T: number, C: number, nH: number];

interface Times {
  forwardMs: number;
  backwardMs: number;
}

function torchTimes(shape: Shape, reps: number, threads: number): Times & { threads: number; torch: string } {
  const [B, T, C, nH] = shape;
  const args = ["--batch", B, "--block", T, "--channels", C, "--heads", nH, "--reps", reps, "--threads", threads];
  const r = spawnSync(PYTHON, [join(here, "attention_torch.py"), ...args.map(String)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`attention_torch.py failed (exit ${r.status}): ${r.stderr || r.error?.message}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as Times & { threads: number; torch: string };
}

function charlmTimes(be: Backend<WasmStorage>, shape: Shape, reps: number): Times {
  const [B, T, C, nH] = shape;
  const rng = new Rng(1);
  const put = (n: number) => {
    const s = be.alloc(n);
    be.write(
      s,
      Float32Array.from({ length: n }, () => rng.normal()),
    );
    return s;
  };
  const n = B * T * C;
  const [q, k, v, out, g, dq, dk, dv] = Array.from({ length: 8 }, () => put(n));
  const att = be.alloc(B * nH * T * T);
  const time = (fn: () => void) => {
    const t0 = performance.now();
    fn();
    return performance.now() - t0;
  };
  let forwardMs = Infinity;
  let backwardMs = Infinity;
  for (let r = 0; r < reps + 2; r++) {
    const f = time(() => be.attention(q, k, v, out, att, B, T, C, nH));
    const b = time(() => be.attentionBackward(q, k, v, att, g, dq, dk, dv, B, T, C, nH));
    if (r >= 2) [forwardMs, backwardMs] = [Math.min(forwardMs, f), Math.min(backwardMs, b)];
  }
  for (const s of [q, k, v, out, g, dq, dk, dv, att]) be.free(s);
  return { forwardMs, backwardMs };
}

function option(args: string[], name: string): string[] {
  return args.flatMap((a, i) => (a === name && i + 1 < args.length ? [args[i + 1]] : []));
}

export async function main(args: string[]): Promise<void> {
  const reps = Number(option(args, "--reps")[0] ?? 10);
  const shapes: Shape[] = option(args, "--shape").map((s) => {
    const v = s.split(",").map(Number);
    if (v.length !== 4 || v.some((x) => !Number.isInteger(x) || x < 1) || v[2] % v[3] !== 0) {
      throw new Error(`--shape ${s}: want B,T,C,NH (positive integers, C a multiple of NH), e.g. 32,128,128,4`);
    }
    return v as Shape;
  });
  if (shapes.length === 0) shapes.push([32, 128, 128, 4], [8, 256, 384, 6]);
  const one = await createWasmBackend({ threads: 1 });
  const many = await createWasmBackend({});
  try {
    for (const shape of shapes) {
      const [B, T, C, nH] = shape;
      console.log(`\nbatch ${B}, block ${T}, ${C} channels, ${nH} heads (best of ${reps}, ms)`);
      const rows: [string, Times, Times][] = [
        ["1 thread", charlmTimes(one, shape, reps), torchTimes(shape, reps, 1)],
        [`default (charlm ${many.threads}, torch default)`, charlmTimes(many, shape, reps), torchTimes(shape, reps, 0)],
      ];
      for (const [label, c, t] of rows) {
        console.log(`  ${label}`);
        for (const part of ["forward", "backward"] as const) {
          const [cm, tm] = [c[`${part}Ms`], t[`${part}Ms`]];
          console.log(
            `    ${part.padEnd(8)} charlm ${cm.toFixed(2).padStart(8)}  PyTorch ${tm.toFixed(2).padStart(8)}` +
              `  ratio ${(tm / cm).toFixed(2)}`,
          );
        }
      }
    }
  } finally {
    await many.close();
  }
}
