// Where a training run keeps what it writes: the checkpoint, the metrics log and the loss curve. `charlm train`
// writes a directory (directoryStore); the web page trains in the tab into memory (MemoryStore) and offers the
// checkpoint as one tar file that `charlm sample --model run.tar` reads. The loop goes through this seam only, so
// one loop serves both and the page bundles no file system code it would call.

import * as path from "node:path";
import {
  encodeCheckpoint,
  makeDir,
  MANIFEST,
  openForWriting,
  prettyJson,
  saveCheckpoint,
  type CheckpointInput,
  type EpochRecord,
  type Manifest,
} from "../checkpoint/checkpoint.js";
import { writeTar } from "../checkpoint/tar.js";
import { lossChartSvg } from "../util/chart.js";
import { MetricsLog, type MetricsLine } from "./metrics.js";
import { writeLossCurve } from "./plot.js";

export interface RunStore {
  /** Become the run's one writer (a directory takes its lock); release when the run ends. */
  open(): Promise<{ release(): void }>;
  save(c: CheckpointInput): Promise<Manifest>;
  appendMetrics(line: MetricsLine): Promise<void>;
  /** Drop metrics lines after `step` (a resumed run) or all of them (a fresh run: step -1). */
  truncateMetricsAfter(step: number): Promise<void>;
  /** Draw the loss curve (loss.svg) titled `name`, per character or per token as the `tokenizer` kind says. */
  plot(history: EpochRecord[], name: string, tokenizer: string): Promise<void>;
}

/** The checkpoint directory `charlm train --out DIR` writes (see checkpoint.ts). */
export function directoryStore(dir: string): RunStore {
  const metrics = new MetricsLog(path.join(dir, "metrics.jsonl"));
  return {
    async open() {
      await makeDir(dir);
      return openForWriting(dir);
    },
    save: (c) => saveCheckpoint(dir, c),
    appendMetrics: (line) => metrics.append(line),
    truncateMetricsAfter: (step) => (step < 0 ? metrics.reset() : metrics.truncateAfter(step)),
    async plot(history, name, tokenizer) {
      await writeLossCurve(dir, history, name, tokenizer);
    },
  };
}

/** A run kept in memory: the last checkpoint's files, the metrics lines, the loss curve; `onMetrics` sees each line. */
export class MemoryStore implements RunStore {
  /** The last saved checkpoint's files, charlm.json included, plus metrics.jsonl and loss.svg. */
  readonly files = new Map<string, Uint8Array>();
  readonly metrics: MetricsLine[] = [];

  constructor(private readonly onMetrics: (line: MetricsLine) => void = () => {}) {}

  open(): Promise<{ release(): void }> {
    return Promise.resolve({ release: () => {} });
  }

  async save(c: CheckpointInput): Promise<Manifest> {
    const { manifest, files } = await encodeCheckpoint(c);
    for (const name of [...this.files.keys()]) if (name.endsWith(".safetensors")) this.files.delete(name);
    for (const [name, bytes] of files) this.files.set(name, bytes);
    this.files.set(MANIFEST, new TextEncoder().encode(prettyJson(manifest) + "\n"));
    this.files.set(
      "metrics.jsonl",
      new TextEncoder().encode(this.metrics.map((l) => JSON.stringify(l) + "\n").join("")),
    );
    return manifest;
  }

  appendMetrics(line: MetricsLine): Promise<void> {
    this.metrics.push(line);
    this.onMetrics(line);
    return Promise.resolve();
  }

  truncateMetricsAfter(step: number): Promise<void> {
    const kept = this.metrics.filter((l) => l.step <= step);
    this.metrics.splice(0, this.metrics.length, ...kept);
    return Promise.resolve();
  }

  plot(history: EpochRecord[], name: string, tokenizer: string): Promise<void> {
    this.files.set("loss.svg", new TextEncoder().encode(lossChartSvg(history, name, tokenizer) + "\n"));
    return Promise.resolve();
  }

  /** The checkpoint as one uncompressed tar under the directory `dir` (charlm.json first). */
  tar(dir: string): Uint8Array {
    if (!this.files.has(MANIFEST)) throw new Error("no checkpoint has been saved yet");
    const names = [MANIFEST, ...[...this.files.keys()].filter((n) => n !== MANIFEST)];
    return writeTar(
      dir,
      names.map((n) => [n, this.files.get(n)!]),
      Date.now() / 1000,
    );
  }
}
