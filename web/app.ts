// The page: pick a model, set the sampling controls, watch the text stream in. Two ways to run: on the server
// (POST /api/generate/stream, read as server-sent events) or in this browser (./local.ts downloads the weights
// once and runs the engine here, on the kernels the selector at the top picks). Below, "train in this tab"
// (./train-ui.ts), which can also start from one of these models. Bundled by web/build.ts into web/dist/app.js
// and web/dist/train-worker.js.

import type { BackendChoice } from "./backend-choice.js";
import { LocalModels, type Settings } from "./local.js";
import { startTrainPanel } from "./train-ui.js";

interface CardInfo {
  name: string;
  type: string;
  architecture: string;
  parameters: number;
  vocabSize: number;
  tokenizer?: string;
  validationLoss: number | null;
  trainingSeconds: number | null;
  steps: number | null;
  inBrowser: boolean;
  config: { blockSize?: number };
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
};

const ui = {
  model: $<HTMLSelectElement>("model"),
  prime: $<HTMLTextAreaElement>("prime"),
  length: $<HTMLInputElement>("length"),
  temperature: $<HTMLInputElement>("temperature"),
  topK: $<HTMLInputElement>("top-k"),
  topP: $<HTMLInputElement>("top-p"),
  windowStride: $<HTMLInputElement>("window-stride"),
  windowStrideRow: $("window-stride-row"),
  seed: $<HTMLInputElement>("seed"),
  backend: $<HTMLSelectElement>("backend"),
  generate: $<HTMLButtonElement>("generate"),
  stop: $<HTMLButtonElement>("stop"),
  copy: $<HTMLButtonElement>("copy"),
  status: $("status"),
  health: $("health"),
  outPrime: $("output-prime"),
  outText: $("output-text"),
};

let models: CardInfo[] = [];
let running: AbortController | null = null;
const local = new LocalModels();

// ---------------------------------------------------------------------------------------------------------------
// Controls and the model card

function showValues(): void {
  $("length-out").textContent = ui.length.value;
  $("temperature-out").textContent = Number(ui.temperature.value).toFixed(2);
  $("top-k-out").textContent = ui.topK.value === "0" ? "off" : ui.topK.value;
  $("top-p-out").textContent = ui.topP.value === "1" ? "off" : Number(ui.topP.value).toFixed(2);
  $("window-stride-out").textContent = ui.windowStride.value === "1" ? "1: whole window" : ui.windowStride.value;
}

function mode(): "server" | "browser" {
  const checked = document.querySelector<HTMLInputElement>('input[name="mode"]:checked');
  return checked?.value === "browser" ? "browser" : "server";
}

function setStatus(text: string, error = false): void {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", error);
}

function formatSeconds(s: number): string {
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function showCard(m: CardInfo): void {
  $("card-name").textContent = m.name;
  $("card-type").textContent = m.type;
  $("card-params").textContent = m.parameters.toLocaleString("en-US");
  $("card-vocab").textContent =
    m.tokenizer && m.tokenizer !== "char" ? `${m.vocabSize} ${m.tokenizer} tokens` : `${m.vocabSize} symbols`;
  $("card-loss").textContent =
    m.validationLoss === null
      ? "not measured"
      : m.tokenizer && m.tokenizer !== "char"
        ? `${m.validationLoss.toFixed(4)} nats/token`
        : `${m.validationLoss.toFixed(4)} nats/char (${(m.validationLoss / Math.LN2).toFixed(3)} bits/char)`;
  const training = [m.steps === null ? "" : `${m.steps.toLocaleString("en-US")} steps`];
  if (m.trainingSeconds !== null) training.push(formatSeconds(m.trainingSeconds));
  $("card-training").textContent = training.filter(Boolean).join(", ") || "unknown";
  $("card-arch").textContent = m.architecture;
  $<HTMLImageElement>("card-curve").src = `/api/models/${encodeURIComponent(m.name)}/loss.svg`;
  ui.topK.max = String(m.vocabSize);
  // A GPT (a model with a fixed window) takes a window stride of 1 .. its blockSize; other models none
  const blockSize = m.config?.blockSize;
  ui.windowStrideRow.hidden = typeof blockSize !== "number";
  if (typeof blockSize === "number") {
    ui.windowStride.max = String(blockSize);
    if (Number(ui.windowStride.value) > blockSize) ui.windowStride.value = String(blockSize);
  }
  showValues();
  const browserMode = document.querySelector<HTMLInputElement>('input[name="mode"][value="browser"]')!;
  browserMode.disabled = !m.inBrowser;
  if (!m.inBrowser && browserMode.checked) {
    document.querySelector<HTMLInputElement>('input[name="mode"][value="server"]')!.checked = true;
  }
}

function settings(): Settings {
  const seed = ui.seed.value.trim();
  return {
    model: ui.model.value,
    prime: ui.prime.value,
    length: Number(ui.length.value),
    temperature: Number(ui.temperature.value),
    topK: Number(ui.topK.value),
    topP: Number(ui.topP.value),
    windowStride: ui.windowStrideRow.hidden ? undefined : Number(ui.windowStride.value),
    seed: seed === "" ? undefined : Number(seed),
    backend: ui.backend.value as BackendChoice,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Server mode: the event stream, parsed by hand because EventSource cannot POST.

async function streamFromServer(s: Settings, signal: AbortSignal, onText: (t: string) => void): Promise<string> {
  const body: Record<string, unknown> = {
    model: s.model,
    prime: s.prime,
    length: s.length,
    temperature: s.temperature,
    top_k: s.topK,
    top_p: s.topP,
  };
  if (s.seed !== undefined) body.seed = s.seed;
  if (s.windowStride !== undefined) body.window_stride = s.windowStride;
  const res = await fetch("/api/generate/stream", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok || !res.body) {
    const err = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as { error: string };
    throw new Error(err.error);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let reason = "ended";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      const payload = JSON.parse(data) as { text?: string; reason?: string; error?: string; seed?: number };
      if (event === "message" && payload.text !== undefined) onText(payload.text);
      else if (event === "start") ui.seed.placeholder = `random (last: ${payload.seed})`;
      else if (event === "done") reason = payload.reason ?? reason;
      else if (event === "error") throw new Error(payload.error);
    }
  }
  return reason;
}

// ---------------------------------------------------------------------------------------------------------------
// Generate, stop, copy

async function generate(): Promise<void> {
  const s = settings();
  if (!s.model) return;
  running?.abort();
  const ctrl = new AbortController();
  running = ctrl;
  ui.generate.disabled = true;
  ui.stop.disabled = false;
  ui.outPrime.textContent = s.prime;
  ui.outText.textContent = "";
  const text = document.createTextNode("");
  ui.outText.appendChild(text);
  const where = mode();
  const t0 = performance.now();
  let first = 0;
  let chars = 0;
  const onText = (t: string) => {
    if (chars === 0) first = performance.now() - t0;
    chars += Array.from(t).length;
    text.appendData(t);
    if (chars % 20 === 0) setStatus(`${chars} characters…`);
  };
  setStatus(where === "browser" ? "loading the model into this browser…" : "generating…");
  try {
    const reason =
      where === "browser"
        ? await local.generate(s, ctrl.signal, onText, (msg) => setStatus(msg))
        : await streamFromServer(s, ctrl.signal, onText);
    const secs = (performance.now() - t0) / 1000;
    const ended = ctrl.signal.aborted ? "stopped" : reason;
    setStatus(
      `${chars} characters in ${secs.toFixed(2)} s (${(chars / Math.max(secs, 1e-3)).toFixed(0)} chars/s, ` +
        `first after ${first.toFixed(0)} ms) on ${where === "browser" ? "this browser" : "the server"}; reason: ${ended}`,
    );
  } catch (err) {
    if (ctrl.signal.aborted) setStatus(`stopped after ${chars} characters`);
    else setStatus(err instanceof Error ? err.message : String(err), true);
  } finally {
    if (running === ctrl) running = null;
    ui.generate.disabled = false;
    ui.stop.disabled = true;
  }
}

async function copy(): Promise<void> {
  const all = (ui.outPrime.textContent ?? "") + (ui.outText.textContent ?? "");
  try {
    await navigator.clipboard.writeText(all);
    setStatus(`copied ${Array.from(all).length} characters`);
  } catch {
    // Clipboard access needs a secure context or permission; fall back to selecting the text for Ctrl-C.
    const range = document.createRange();
    range.selectNodeContents($("output"));
    const sel = window.getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    setStatus("text selected: press Ctrl-C to copy");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Start

async function start(): Promise<void> {
  const trainPanel = startTrainPanel(() => ui.backend.value as BackendChoice);
  for (const el of [ui.length, ui.temperature, ui.topK, ui.topP, ui.windowStride])
    el.addEventListener("input", showValues);
  showValues();
  ui.generate.addEventListener("click", () => void generate());
  ui.stop.addEventListener("click", () => running?.abort());
  ui.copy.addEventListener("click", () => void copy());
  ui.prime.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void generate();
  });
  ui.model.addEventListener("change", () => {
    const m = models.find((x) => x.name === ui.model.value);
    // An error from the previous model's request says nothing about this one.
    setStatus("");
    if (m) showCard(m);
  });
  try {
    const res = await fetch("/api/models");
    const list = (await res.json()) as { models: CardInfo[]; limits: { maxLength: number } };
    models = list.models;
    ui.length.max = String(list.limits.maxLength);
    for (const m of models) ui.model.add(new Option(`${m.name} (${m.type})`, m.name));
    trainPanel.offer(models);
    if (models.length) showCard(models[0]);
    else setStatus("the server has no models", true);
    const health = (await (await fetch("/healthz")).json()) as { status: string };
    ui.health.textContent = `server ${health.status}, ${models.length} model${models.length === 1 ? "" : "s"}`;
  } catch (err) {
    setStatus(`cannot reach the server: ${err instanceof Error ? err.message : String(err)}`, true);
  }
  document.body.dataset.ready = "true";
}

void start();
