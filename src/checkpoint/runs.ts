// What `charlm ls` shows: the checkpoints under a directory, read from their manifests alone (no weights are
// loaded, nothing is written), with whether a trainer is writing one right now.

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { CharlmError } from "../util/errors.js";
import { isFile, readManifest, MANIFEST, type Manifest } from "./checkpoint.js";
import { writerActive } from "./lock.js";

export interface RunInfo {
  name: string; // the directory's name under the listed one
  dir: string;
  status: Manifest["status"] | "training" | "damaged"; // "training": a live process holds its lock
  epoch: number; // completed epochs
  epochs: number | null; // epochs the run was asked for
  step: number;
  bestValLoss: number | null;
  model: string; // "lstm 2x256", "gpt 4x128"
  data: string | null;
  savedAt: string | null;
  problem?: string; // why a damaged run could not be read
}

/** The runs directly under `dir` (and `dir` itself if it is one), by name. */
export async function listRuns(dir: string): Promise<RunInfo[]> {
  let entries: string[];
  try {
    entries = (await fs.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new CharlmError(`${dir}: no such directory; pass the directory your runs are in`);
    if (code === "ENOTDIR") throw new CharlmError(`${dir}: not a directory; pass the directory your runs are in`);
    throw new CharlmError(`${dir}: cannot list (${code ?? "unknown error"}); check the path`);
  }
  const dirs = [...entries.sort().map((e) => path.join(dir, e))];
  if (await isRun(dir)) dirs.unshift(dir);
  const out: RunInfo[] = [];
  for (const d of dirs)
    if (await isRun(d)) out.push(await describeRun(d, d === dir ? path.basename(path.resolve(d)) : path.basename(d)));
  return out;
}

const isRun = (d: string): Promise<boolean> => isFile(path.join(d, MANIFEST));

async function describeRun(dir: string, name: string): Promise<RunInfo> {
  const base = { name, dir, epoch: 0, epochs: null, step: 0, bestValLoss: null, model: "?", data: null, savedAt: null };
  let m: Manifest;
  try {
    m = await readManifest(dir);
  } catch (err) {
    if (!(err instanceof CharlmError)) throw err;
    return { ...base, status: "damaged", problem: err.message };
  }
  const cfg = m.model;
  const model = cfg.type === "gpt" ? `gpt ${cfg.nLayer}x${cfg.nEmbd}` : `${cfg.cell} ${cfg.layers}x${cfg.units}`;
  return {
    ...base,
    status: (await writerActive(dir)) ? "training" : m.status,
    epoch: m.epoch,
    epochs: m.train?.epochs ?? null,
    step: m.step,
    bestValLoss: m.bestValLoss,
    model,
    data: m.dataName,
    savedAt: m.savedAt,
  };
}
