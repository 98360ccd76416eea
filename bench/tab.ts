// Training in the browser tab on the wasm kernels: the page's "train in this tab" in headless Chromium, the build
// and thread count as the page picks them, against what it ran before stop 22 and against Node on the same work.
//
//   npm run bench -- tab [--model "LSTM 256"] [--steps 100] [--rounds 2] [--chars 300000] [--threads N]
//
// Each run opens the page served by `charlm serve`'s server, pastes the first --chars characters of Tiny Shakespeare
// (or of a repeated sentence, where the corpus is not at hand), picks --model among the page's models, trains
// --steps steps on wasm and reads the speed the page reports (characters of training batches over the run's wall
// time, validation and checkpoints included). Configurations, taken in turns for --rounds rounds:
//   plain, 1 thread     only build/kernels.wasm served: what the page ran before (no fused multiply-add, no threads)
//   relaxed, 1 thread   every build served, the page opened with ?threads=1
//   relaxed, N threads  every build served: the page's default (the cores the browser reports, up to 16; --threads)
// and the same run in Node (web/tab-train.ts, the code the tab's worker runs) on the wasm backend at its defaults.
// Needs Debian's chromium (CHARLM_CHROMIUM for another binary).

import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { loadTinyShakespeare } from "../src/data/tinyshakespeare.js";
import { getBackend, useBackend } from "../src/engine/index.js";
import { createServer } from "../src/server/app.js";
import { buildWeb } from "../web/build.js";
import { TAB_DEFAULTS, trainInTab } from "../web/tab-train.js";
import { TAB_MODELS } from "../web/tab-settings.js";

const CHROMIUM = process.env.CHARLM_CHROMIUM ?? "/usr/bin/chromium";

function arg(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}

async function corpus(chars: number): Promise<{ text: string; what: string }> {
  try {
    const ts = await loadTinyShakespeare({ download: false, quiet: true });
    return {
      text: ts.text.slice(0, chars),
      what: `the first ${chars.toLocaleString("en-US")} characters of Tiny Shakespeare`,
    };
  } catch {
    const s = "the quick brown fox jumps over the lazy dog. ";
    return {
      text: s.repeat(Math.ceil(chars / s.length)).slice(0, chars),
      what: "a repeated sentence (no Tiny Shakespeare here)",
    };
  }
}

interface TabResult {
  perSecond: number;
  note: string;
  loss: number;
}

/** One run in the tab: the page at `query`, served with the kernels in `wasmPath`'s folder. */
async function inTab(text: string, model: string, steps: number, wasmPath: string, query: string): Promise<TabResult> {
  const app = createServer([], { wasmPath });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const browser = await chromium.launch({ executablePath: CHROMIUM });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/${query}`);
    await page.waitForSelector("body[data-ready=true]");
    await page.selectOption("#backend", "wasm");
    await page.locator("#train-text").evaluate((el, t) => {
      (el as HTMLTextAreaElement).value = t;
      el.dispatchEvent(new Event("input", { bubbles: true }));
    }, text);
    await page.selectOption("#train-model", model);
    await page.fill("#train-steps", String(steps));
    await page.fill("#train-minutes", "60");
    await page.click("#train-start");
    type Probe = { state: string; error: string; losses: [number, number][] };
    await page.waitForFunction(
      () => (window as unknown as { charlmTrain: Probe }).charlmTrain.state !== "training",
      undefined,
      { timeout: 1_800_000 },
    );
    const p = await page.evaluate(() => (window as unknown as { charlmTrain: Probe }).charlmTrain);
    const status = (await page.locator("#train-status").textContent()) ?? "";
    const m = /\(([\d,]+) chars\/s on (.*?)\);/.exec(status);
    if (p.error || !m || errors.length) throw new Error(`the tab's run failed: ${p.error || errors[0] || status}`);
    return { perSecond: Number(m[1].replace(/,/g, "")), note: m[2], loss: p.losses[p.losses.length - 1][1] };
  } finally {
    await browser.close();
    await app.close();
  }
}

export async function main(args: string[]): Promise<void> {
  const model = arg(args, "--model", "LSTM 256");
  const steps = Number(arg(args, "--steps", "100"));
  const rounds = Number(arg(args, "--rounds", "2"));
  const chars = Number(arg(args, "--chars", "300000"));
  const threads = arg(args, "--threads", "");
  if (!(model in TAB_MODELS))
    throw new Error(`--model ${model}: not one of the page's: ${Object.keys(TAB_MODELS).join(", ")}`);
  const { text, what } = await corpus(chars);
  console.log(`${model}, ${steps} steps in the tab on ${what} (${await buildWeb()})`);

  const build = fileURLToPath(new URL("../build/", import.meta.url));
  const plainOnly = mkdtempSync(join(tmpdir(), "charlm-tab-"));
  copyFileSync(join(build, "kernels.wasm"), join(plainOnly, "kernels.wasm"));
  const configs: [string, string, string][] = [
    ["plain, 1 thread (before)", join(plainOnly, "kernels.wasm"), ""],
    ["relaxed, 1 thread", join(build, "kernels.wasm"), "?threads=1"],
    ["the page's default", join(build, "kernels.wasm"), threads ? `?threads=${threads}` : ""],
  ];
  const results = new Map<string, TabResult[]>(configs.map(([label]) => [label, []]));
  const node: number[] = [];
  const settings = { ...TAB_DEFAULTS, ...TAB_MODELS[model], steps, minutes: 60 };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [label, wasmPath, query] of configs) {
        const res = await inTab(text, model, steps, wasmPath, query);
        results.get(label)!.push(res);
        console.log(
          `  round ${r + 1}, ${label.padEnd(26)} ${res.perSecond.toLocaleString("en-US").padStart(9)} chars/s on ${res.note} (loss ${res.loss.toFixed(4)})`,
        );
      }
      await useBackend("wasm");
      const t0 = performance.now();
      const run = await trainInTab(text, settings, { backend: "wasm", name: "bench" });
      const seconds = (performance.now() - t0) / 1000;
      const be = getBackend() as { build?: string; threads?: number };
      node.push((run.result.step * settings.batchSize * settings.seqLength) / seconds);
      console.log(
        `  round ${r + 1}, ${"Node (same code)".padEnd(26)} ${Math.round(node[node.length - 1])
          .toLocaleString("en-US")
          .padStart(9)} chars/s on wasm, ${be.build}, ${be.threads} threads`,
      );
    }
  } finally {
    rmSync(plainOnly, { recursive: true, force: true });
  }
  const range = (xs: number[]) =>
    `${Math.round(Math.min(...xs)).toLocaleString("en-US")}-${Math.round(Math.max(...xs)).toLocaleString("en-US")}`;
  const before = results.get(configs[0][0])!.map((x) => x.perSecond);
  console.log(`\n${"configuration".padEnd(28)} ${"chars/s".padStart(15)}  ratio to before  ratio to Node`);
  for (const [label] of configs) {
    const xs = results.get(label)!.map((x) => x.perSecond);
    const ratio = xs.map((x, i) => x / before[i]);
    const toNode = xs.map((x, i) => x / node[i]);
    console.log(
      `${label.padEnd(28)} ${range(xs).padStart(15)}  ${Math.min(...ratio).toFixed(2)}-${Math.max(...ratio).toFixed(2)}`.padEnd(
        62,
      ) + `${Math.min(...toNode).toFixed(2)}-${Math.max(...toNode).toFixed(2)}`,
    );
  }
  console.log(`${"Node (same code)".padEnd(28)} ${range(node).padStart(15)}`);
}
