// Load test for `charlm serve`, loopback only and bounded: N streaming clients, each sending one request after
// another to POST /api/generate/stream for M seconds. The server runs as a child process (`charlm serve`), so
// the clients' own work does not share its event loop, and its peak resident memory is read from the kernel
// (VmHWM in /proc/PID/status) at the end.
//
//   npm run bench -- load [--clients 8] [--seconds 10] [--length 200] [--model DIR] [--concurrency 4] [--queue 16]
//
// Without --model it serves a fixed-weight LSTM (the Tiny Shakespeare vocabulary size, 1 x 256 units): the
// numbers measure the server and the sampler, not what the model learned. Reports requests/s, time to first
// character (p50, p99; queueing included), characters/s per stream, total characters/s, errors by kind, and peak
// memory of the server and of this client process.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFlags } from "../src/cli/flags.js";
import { Vocab } from "../src/data/vocab.js";
import { buildModel } from "../src/models/registry.js";
import { saveCheckpoint } from "../src/checkpoint/checkpoint.js";
import { Rng } from "../src/util/rng.js";

const schema = {
  clients: { type: "int", help: "concurrent streaming clients", default: 8, min: 1, max: 64 },
  seconds: { type: "float", help: "how long to keep sending requests", default: 10, above: 0, max: 120 },
  length: { type: "int", help: "characters per request", default: 200, min: 1, max: 2000 },
  model: { type: "string", help: "checkpoint directory to serve (default: a fixed-weight LSTM)", arg: "DIR" },
  concurrency: { type: "int", help: "the server's --concurrency", default: 4, min: 1 },
  queue: { type: "int", help: "the server's --queue", default: 16, min: 0 },
  backend: { type: "string", help: "the server's --backend", choices: ["auto", "js", "wasm"], default: "auto" },
} as const;

interface RequestResult {
  ok: boolean;
  error?: string;
  ttfc?: number; // ms from sending the request to the first character
  chars: number;
  streamMs: number; // ms from the first character to the end
}

const quantile = (xs: number[], q: number): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** A fixed-weight checkpoint to serve when no --model is given. */
async function fixedModel(dir: string): Promise<string> {
  const chars = Array.from("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
  const vocab = new Vocab(chars);
  const model = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 64, units: 256, layers: 1, dropout: 0 },
    new Rng(0),
  );
  const out = join(dir, "bench-lstm");
  await saveCheckpoint(out, { model, vocab });
  return out;
}

async function startServer(
  modelDir: string,
  concurrency: number,
  queue: number,
  backend: string,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "src/cli/main.ts",
      "serve",
      "--model",
      modelDir,
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--quiet",
      "--concurrency",
      String(concurrency),
      "--queue",
      String(queue),
      "--seed",
      "1",
      "--backend",
      backend,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      const m = /serving on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`charlm serve exited with ${code}: ${stderr.trim()}`)));
  });
  return { child, url };
}

/** One streaming request, timed. */
async function streamOnce(url: string, length: number, seed: number): Promise<RequestResult> {
  const t0 = performance.now();
  let first = 0;
  let chars = 0;
  try {
    const res = await fetch(`${url}/api/generate/stream`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prime: "ROMEO:\n", length, temperature: 0.8, seed }),
    });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      return { ok: false, error: `HTTP ${res.status}`, chars: 0, streamMs: 0 };
    }
    const decoder = new TextDecoder();
    let buffer = "";
    let reason = "";
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (block.startsWith("data: ")) {
          if (chars === 0) first = performance.now();
          chars += Array.from((JSON.parse(block.slice(6)) as { text: string }).text).length;
        } else if (block.startsWith("event: done")) {
          reason = (JSON.parse(block.slice(block.indexOf("data: ") + 6)) as { reason: string }).reason;
        } else if (block.startsWith("event: error")) {
          reason = "error event";
        }
      }
    }
    const end = performance.now();
    const ok = reason === "length" && chars === length;
    return {
      ok,
      error: ok ? undefined : `ended with ${reason || "no done event"}`,
      ttfc: first ? first - t0 : undefined,
      chars,
      streamMs: first ? end - first : 0,
    };
  } catch (err) {
    return { ok: false, error: (err as Error).message, chars, streamMs: 0 };
  }
}

function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

export async function main(args: string[]): Promise<void> {
  const f = parseFlags(args, schema, "bench load");
  const work = mkdtempSync(join(tmpdir(), "charlm-load-"));
  const modelDir = f.model ?? (await fixedModel(work));
  const { child, url } = await startServer(modelDir, f.concurrency, f.queue, f.backend);
  console.log(
    `load: ${f.clients} streaming clients x ${f.seconds}s, ${f.length} chars/request, server ${url} ` +
      `(concurrency ${f.concurrency}, queue ${f.queue}, backend ${f.backend}), model ${f.model ?? "fixed-weight LSTM 1x256"}`,
  );
  try {
    // Warm up once (JIT, first allocation) so the first client's numbers are not an outlier.
    await streamOnce(url, 20, 0);
    const results: RequestResult[] = [];
    const t0 = performance.now();
    const deadline = t0 + f.seconds * 1000;
    let seed = 1;
    await Promise.all(
      Array.from({ length: f.clients }, async () => {
        while (performance.now() < deadline) results.push(await streamOnce(url, f.length, seed++));
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    const ok = results.filter((r) => r.ok);
    const ttfc = ok.map((r) => r.ttfc!).filter((x) => x !== undefined);
    const perStream = ok.filter((r) => r.streamMs > 0).map((r) => (r.chars - 1) / (r.streamMs / 1000));
    const errors = new Map<string, number>();
    for (const r of results) if (!r.ok) errors.set(r.error!, (errors.get(r.error!) ?? 0) + 1);
    const totalChars = results.reduce((n, r) => n + r.chars, 0);
    console.log(
      `requests         ${results.length} in ${wall.toFixed(1)} s: ${(ok.length / wall).toFixed(2)} completed/s`,
    );
    console.log(
      `first character  p50 ${quantile(ttfc, 0.5).toFixed(1)} ms, p99 ${quantile(ttfc, 0.99).toFixed(1)} ms (queueing included)`,
    );
    console.log(
      `chars/s/stream   p50 ${quantile(perStream, 0.5).toFixed(0)}, min ${Math.min(...perStream).toFixed(0)}; ` +
        `all streams ${(totalChars / wall).toFixed(0)} chars/s`,
    );
    console.log(`errors           ${errors.size ? [...errors].map(([k, n]) => `${n} x ${k}`).join(", ") : "none"}`);
    console.log(
      `peak memory      server ${peakRssMiB(child.pid!).toFixed(0)} MiB RSS, ` +
        `client ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB RSS`,
    );
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
    rmSync(work, { recursive: true, force: true });
  }
}
