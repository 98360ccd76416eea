// Messages between the page (./train-ui.ts) and the training worker (./train-worker.ts).

import type { MetricsLine } from "../src/train/metrics.js";
import type { BackendChoice } from "./backend-choice.js";
import type { TabSettings } from "./tab-settings.js";

export type ToWorker =
  | {
      type: "train";
      text: string;
      name: string; // the corpus, as the checkpoint records it
      dirName: string; // the directory inside the tar
      from?: string; // a served model to fine-tune (its name in /api/models); absent: a new model
      settings: TabSettings;
      choice: BackendChoice;
      wasmUrl: string;
      threads?: number; // the wasm kernels' threads (the page's ?threads=N); default: the cores, where allowed
    }
  | {
      type: "generate";
      prime: string;
      length: number;
      temperature: number;
      seed: number;
      choice: BackendChoice;
      wasmUrl: string;
      threads?: number; // the wasm kernels' threads (the page's ?threads=N); default: the cores, where allowed
    }
  | { type: "stop" };

export type FromWorker =
  | { type: "backend"; purpose: "train" | "generate"; name: string; note: string }
  | { type: "metrics"; line: MetricsLine }
  | {
      type: "trained";
      status: string;
      step: number;
      seconds: number;
      bestValLoss: number | null;
      charsPerStep: number;
      unknown: number; // fine-tuning: characters of the text the source lacks, read as "<unk>"
      tokenizer: string; // char, word or bpe: what the losses and speeds are per
      tar: ArrayBuffer;
      lost?: string; // the GPU device was lost (the message): the tar is the checkpoint saved before, at `step`
    }
  | { type: "text"; text: string }
  | { type: "status"; message: string } // work under way that sends nothing else for a while
  | { type: "generated"; chars: number; seconds: number }
  | { type: "error"; message: string };
