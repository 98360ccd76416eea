// The page's "train in this tab" panel: text in (drop, file picker or paste), where to start (a new model of a chosen
// size, or one of the server's models to fine-tune) and a time budget, then a worker (./train-worker.ts) trains with
// the training library while this thread draws the loss curve from the run's metrics lines. Afterwards: generate
// from the model, and download the checkpoint as a tar.

import { lineChartSvg, lossUnit } from "../src/util/chart.js";
import type { MetricsLine } from "../src/train/metrics.js";
import type { BackendChoice } from "./backend-choice.js";
import { TAB_DEFAULTS, TAB_MODELS, type TabSettings } from "./tab-settings.js";
import type { FromWorker, ToWorker } from "./train-protocol.js";

/** How the status line words a run's end (the loop's status; anything else is "done"). */
const ENDED: Record<string, string> = {
  stopped: "stopped", // by Stop or the Minutes box, with the best validation's weights (the loop's endOnStop)
  "early-stopped": "stopped early (validation no better)",
};

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
};

/** What the browser test reads (window.charlmTrain). */
interface TrainProbe {
  state: "idle" | "training" | "trained" | "generating" | "error";
  backend: string;
  losses: [number, number][];
  validation: [number, number][];
  text: string;
  error: string;
  from: string; // the served model being fine-tuned, or "" for a new model
}

/** What the panel needs of a served model to offer it as a starting point. */
export interface ServedModelInfo {
  name: string;
  type: string;
  inBrowser: boolean;
  tokenizer?: string; // char (when absent), word or bpe: fine-tuning keeps it, and the losses are per its tokens
}

export interface TrainPanel {
  /** Offer the server's models (those the browser can download) under "Start from". */
  offer(models: ServedModelInfo[]): void;
}

export function startTrainPanel(backendChoice: () => BackendChoice): TrainPanel {
  const ui = {
    text: $<HTMLTextAreaElement>("train-text"),
    file: $<HTMLInputElement>("train-file"),
    size: $("train-size"),
    from: $<HTMLSelectElement>("train-from"),
    model: $<HTMLSelectElement>("train-model"),
    minutes: $<HTMLInputElement>("train-minutes"),
    steps: $<HTMLInputElement>("train-steps"),
    start: $<HTMLButtonElement>("train-start"),
    stop: $<HTMLButtonElement>("train-stop"),
    download: $<HTMLAnchorElement>("train-download"),
    status: $("train-status"),
    chart: $("train-chart"),
    prime: $<HTMLInputElement>("train-prime"),
    generate: $<HTMLButtonElement>("train-generate"),
    output: $("train-output"),
  };
  const probe: TrainProbe = { state: "idle", backend: "", losses: [], validation: [], text: "", error: "", from: "" };
  (globalThis as { charlmTrain?: TrainProbe }).charlmTrain = probe;
  for (const name of Object.keys(TAB_MODELS)) ui.model.add(new Option(name, name));
  ui.model.value = "LSTM 128";
  ui.minutes.value = String(TAB_DEFAULTS.minutes);
  ui.steps.value = String(TAB_DEFAULTS.steps);
  // A served model fixes the shape: the size picker is for new models only.
  ui.from.addEventListener("change", () => {
    ui.model.disabled = ui.from.value !== "";
  });

  let worker: Worker | null = null;
  let fileName = "pasted text";
  let trainNote = "";
  let genNote = "";
  // What the plotted losses are per: characters for a new model (char), tokens for a word or bpe model fine-tuned.
  let unit: "char" | "token" = "char";
  const tokenizers = new Map<string, string | undefined>(); // served model -> its tokenizer kind

  const status = (text: string, error = false): void => {
    ui.status.textContent = text;
    ui.status.classList.toggle("error", error);
  };
  const showSize = (): void => {
    ui.size.textContent = `${Array.from(ui.text.value).length.toLocaleString("en-US")} characters`;
  };
  const draw = (): void => {
    ui.chart.innerHTML = lineChartSvg(
      [
        { label: "train", color: "#4878d0", points: probe.losses },
        { label: "validation", color: "#ee854a", points: probe.validation },
      ],
      { title: `loss (nats/${unit}), ${trainNote || "…"}`, xLabel: "step", yLabel: "loss", width: 480, height: 260 },
    );
  };
  const setState = (s: TrainProbe["state"]): void => {
    probe.state = s;
    document.body.dataset.train = s;
    const busy = s === "training" || s === "generating";
    ui.start.disabled = busy;
    ui.stop.disabled = !busy;
    ui.generate.disabled = busy || !ui.download.href;
  };

  // ---- text in
  const readFile = async (f: File): Promise<void> => {
    fileName = f.name;
    ui.text.value = await f.text();
    showSize();
  };
  ui.text.addEventListener("input", () => {
    fileName = "pasted text";
    showSize();
  });
  ui.file.addEventListener("change", () => void (ui.file.files?.[0] && readFile(ui.file.files[0])));
  ui.text.addEventListener("dragover", (e) => {
    e.preventDefault();
    ui.text.classList.add("drop");
  });
  ui.text.addEventListener("dragleave", () => ui.text.classList.remove("drop"));
  ui.text.addEventListener("drop", (e) => {
    e.preventDefault();
    ui.text.classList.remove("drop");
    const f = e.dataTransfer?.files[0];
    if (f) void readFile(f);
  });

  // ---- the worker
  const onMessage = (m: FromWorker): void => {
    if (m.type === "backend") {
      if (m.purpose === "train") trainNote = m.note;
      else genNote = m.note;
      probe.backend = m.name;
      status(m.purpose === "train" ? `training on ${m.note}…` : `generating on ${m.note}…`);
    } else if (m.type === "status") {
      status(m.message);
    } else if (m.type === "metrics") {
      onMetrics(m.line);
    } else if (m.type === "trained") {
      const url = URL.createObjectURL(new Blob([m.tar], { type: "application/x-tar" }));
      if (ui.download.href) URL.revokeObjectURL(ui.download.href);
      ui.download.href = url;
      ui.download.download = `charlm-${slug(fileName)}.tar`;
      ui.download.classList.remove("disabled");
      ui.download.removeAttribute("aria-disabled");
      const cps = (m.step * m.charsPerStep) / Math.max(m.seconds, 1e-3);
      const best = m.bestValLoss === null ? "no validation yet" : `best validation ${m.bestValLoss.toFixed(3)}`;
      const unk = m.unknown ? `; ${m.unknown} characters ${probe.from} lacks read as <unk>` : "";
      unit = lossUnit(m.tokenizer);
      draw();
      if (m.lost) {
        probe.error = m.lost;
        status(`${m.lost}: download it or generate from it (on a new device or wasm); ${best} nats/${unit}`, true);
        setState("trained");
        return;
      }
      status(
        `${probe.from ? `fine-tuned ${probe.from}: ` : ""}` +
          `${ENDED[m.status] ?? "done"} after ${m.step} steps in ${m.seconds.toFixed(1)} s ` +
          `(${Math.round(cps).toLocaleString("en-US")} ${unit}s/s on ${trainNote}); ${best} nats/${unit}${unk}`,
      );
      setState("trained");
    } else if (m.type === "text") {
      probe.text += m.text;
      ui.output.append(m.text);
    } else if (m.type === "generated") {
      status(`${m.chars} characters in ${m.seconds.toFixed(2)} s on ${genNote}`);
      setState("trained");
    } else if (m.type === "error") {
      probe.error = m.message;
      status(m.message, true);
      setState(ui.download.href ? "trained" : "error");
    }
  };
  const onMetrics = (line: MetricsLine): void => {
    if (line.type === "step") probe.losses.push([line.step, line.loss]);
    else if (line.type === "epoch" || line.type === "eval") probe.validation.push([line.step, line.valLoss]);
    else return;
    if (line.type === "step") status(`training on ${trainNote}: step ${line.step}, loss ${line.loss.toFixed(3)}`);
    draw();
  };
  const send = (m: ToWorker): void => {
    if (!worker) {
      worker = new Worker("/dist/train-worker.js", { type: "module" });
      worker.onmessage = (e: MessageEvent<FromWorker>) => onMessage(e.data);
      worker.onerror = (e) => onMessage({ type: "error", message: `the training worker failed: ${e.message}` });
    }
    worker.postMessage(m);
  };

  ui.start.addEventListener("click", () => {
    const text = ui.text.value;
    if (!text) return status("paste or drop a text first", true);
    const from = ui.from.value;
    const settings: TabSettings = {
      ...TAB_DEFAULTS,
      // Fine-tuning keeps the source's shape; the page's sequence and batch (TAB_DEFAULTS) apply.
      ...(from ? {} : TAB_MODELS[ui.model.value]),
      minutes: Number(ui.minutes.value) || TAB_DEFAULTS.minutes,
      steps: Math.max(1, Math.floor(Number(ui.steps.value) || TAB_DEFAULTS.steps)),
    };
    probe.losses = [];
    probe.validation = [];
    probe.error = "";
    probe.from = from;
    trainNote = "";
    unit = lossUnit(from ? tokenizers.get(from) : "char");
    draw();
    setState("training");
    status("starting…");
    send({
      type: "train",
      text,
      name: fileName,
      dirName: `charlm-${slug(fileName)}`,
      ...(from ? { from } : {}),
      settings,
      choice: backendChoice(),
      wasmUrl: "/kernels.wasm",
      threads: threadsAsked(),
    });
  });
  ui.stop.addEventListener("click", () => send({ type: "stop" }));
  ui.generate.addEventListener("click", () => {
    ui.output.textContent = ui.prime.value;
    probe.text = "";
    probe.error = "";
    setState("generating");
    send({
      type: "generate",
      prime: ui.prime.value,
      length: 400,
      temperature: 0.8,
      seed: crypto.getRandomValues(new Uint32Array(1))[0],
      choice: backendChoice(),
      wasmUrl: "/kernels.wasm",
      threads: threadsAsked(),
    });
  });
  showSize();
  draw();
  return {
    offer(models) {
      for (const m of models) {
        if (!m.inBrowser) continue;
        ui.from.add(new Option(`fine-tune ${m.name} (${m.type})`, m.name));
        tokenizers.set(m.name, m.tokenizer);
      }
    },
  };
}

/**
 * The page's ?threads=N (1 to 64): how many threads the wasm kernels train and generate on in the tab's worker;
 * absent (or not such a number), the worker takes the cores the browser reports, up to 16.
 */
function threadsAsked(): number | undefined {
  const n = Number(new URLSearchParams(location.search).get("threads") ?? NaN);
  return Number.isInteger(n) && n >= 1 && n <= 64 ? n : undefined;
}

const slug = (name: string): string =>
  name
    .replace(/\.[^.]*$/, "")
    .replace(/[^A-Za-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40) || "run";
