// The metrics log: one JSON object per line (metrics.jsonl next to the checkpoint), easy to tail, grep and load
// into a notebook. Step lines carry the training loss of that step; epoch lines the mean training loss and the
// validation loss. A resumed run first drops the lines written after the checkpoint it resumes from, so the
// log reads as if the run had never stopped.

import { promises as fs } from "node:fs";
import { writeFileAtomic } from "../checkpoint/atomic.js";

export interface StepLine {
  type: "step";
  step: number; // optimizer steps done (1-based: the step just taken)
  epoch: number; // 1-based epoch the step belongs to
  loss: number; // nats/token of this batch (nats/char for a char model)
  lr: number;
  gradNorm: number; // global gradient norm before clipping
  charsPerSec: number;
  time: number; // seconds since the run started (including earlier, resumed-from sessions)
}

export interface EpochLine {
  type: "epoch";
  step: number;
  epoch: number;
  trainLoss: number; // mean nats/token over the epoch's batches
  valLoss: number; // nats/token on the validation split
  valNatsPerChar: number; // per character of the validation text ("<unk>" charges included; evaluate.ts)
  valBitsPerChar: number; // valNatsPerChar / ln 2
  valUnknownShare?: number; // word tokenizer: fraction of the validation tokens that are "<unk>"
  lr: number;
  seconds: number; // wall time of the epoch
  time: number;
}

/** A validation loss measured mid-epoch: where a run stops at its time limit. */
export interface EvalLine {
  type: "eval";
  step: number;
  epoch: number; // 1-based epoch the step belongs to
  valLoss: number; // nats/token
  valNatsPerChar: number;
  valBitsPerChar: number;
  valUnknownShare?: number;
  time: number;
}

export type MetricsLine =
  StepLine | EpochLine | EvalLine | { type: "event"; step: number; event: string; time: number };

export class MetricsLog {
  constructor(readonly file: string) {}

  async append(line: MetricsLine): Promise<void> {
    await fs.appendFile(this.file, JSON.stringify(line) + "\n");
  }

  /** Keep only the lines up to and including `step` (for --resume); a missing file is fine. */
  async truncateAfter(step: number): Promise<void> {
    let text: string;
    try {
      text = await fs.readFile(this.file, "utf8");
    } catch {
      return;
    }
    const kept = text
      .split("\n")
      .filter((l) => l.trim() !== "")
      .filter((l) => {
        try {
          return (JSON.parse(l) as { step?: number }).step! <= step;
        } catch {
          return false; // a line cut short by a kill
        }
      });
    await writeFileAtomic(this.file, kept.map((l) => l + "\n").join(""));
  }

  /** Start a fresh log (a new run into the same directory). */
  async reset(): Promise<void> {
    await fs.rm(this.file, { force: true });
  }
}
