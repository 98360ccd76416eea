// The file of step settings `charlm tune-gpu` measured, per GPU adapter: webgpu-kernels.json in charlm's cache
// directory (CHARLM_CACHE_DIR, else $XDG_CACHE_HOME/charlm, else ~/.cache/charlm). The CLI loads the entry of the
// adapter it runs on whenever it selects webgpu (useKernelTable); CHARLM_WEBGPU_KERNELS and the single settings win
// over it. Node only (the browser's page keeps the defaults).
//
// { "format": "charlm-webgpu-kernels", "version": 1,
//   "adapters": { "<adapter>": { "updated": "<ISO time>", "table": { "lstmForward H512 B32": {...}, ... },
//                                "matmul": "auto" } } }
// "matmul" (since stop 13, optional): the matrix products' tiles that timed fastest there (useMatmulVariant).
// "generation" (since stop 16, optional): "fused", "wide" (since stop 17) or "steps", the fastest way to generate at
// batch 1 there (useBurstRoute: a recurrent model's bursts in one kernel, a kernel per layer a character, or a
// step's kernels per character).

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../../checkpoint/atomic.js";
import { defaultCacheDir } from "../../data/tinyshakespeare.js";
import { CharlmError } from "../../util/errors.js";
import { TUNED_VARIANTS, useMatmulVariant, type TunedVariant } from "./webgpu/kernels/matmul.js";
import { BURST_ROUTES, useBurstRoute, type BurstRoute } from "./webgpu/kernels/generate.js";
import { useKernelTable, type StepSettings } from "./webgpu/kernels/recurrent.js";

const FORMAT = "charlm-webgpu-kernels";

interface TunedFile {
  format: typeof FORMAT;
  version: 1;
  adapters: Record<
    string,
    { updated: string; table: Record<string, StepSettings>; matmul?: TunedVariant; generation?: BurstRoute }
  >;
}

/** Where the CLI keeps the tuned settings: webgpu-kernels.json in the cache directory. */
export function tunedKernelsPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(defaultCacheDir(env), "webgpu-kernels.json");
}

const SETTING_VALUES: Record<keyof StepSettings, readonly unknown[]> = {
  rows: [1, 2, 4, 8],
  slices: [1, 2, 4, 8],
  units: [1, 2, 4],
  wide: [false, true],
  prefetch: [false, true],
  ahead: [undefined, false, true], // optional: absent in tables written before stop 15
  products: [undefined, false, true], // optional: absent in tables written before the products layout
};

/** The file's contents, or null when there is none; a file that is not one refuses with a line saying so. */
async function readTuned(file: string): Promise<TunedFile | null> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  const bad = (why: string) =>
    new CharlmError(`${file}: ${why}, not the settings charlm tune-gpu writes; delete it or run charlm tune-gpu again`);
  let f: TunedFile;
  try {
    f = JSON.parse(text) as TunedFile;
  } catch {
    throw bad("not JSON");
  }
  if (f?.format !== FORMAT || f.version !== 1 || typeof f.adapters !== "object" || f.adapters === null)
    throw bad(`no "format": "${FORMAT}", "version": 1 and "adapters"`);
  for (const [adapter, entry] of Object.entries(f.adapters)) {
    if (typeof entry?.table !== "object" || entry.table === null) throw bad(`adapter "${adapter}" has no table`);
    if (entry.matmul !== undefined && !(TUNED_VARIANTS as readonly unknown[]).includes(entry.matmul))
      throw bad(`adapter "${adapter}"'s "matmul" is not one of ${TUNED_VARIANTS.join(", ")}`);
    if (entry.generation !== undefined && !(BURST_ROUTES as readonly unknown[]).includes(entry.generation))
      throw bad(`adapter "${adapter}"'s "generation" is not "fused", "wide" or "steps"`);
    for (const [key, s] of Object.entries(entry.table)) {
      const ok =
        /^(lstm|gru|rnn)(Forward|Backward) H\d+ B\d+$/.test(key) &&
        (Object.keys(SETTING_VALUES) as (keyof StepSettings)[]).every((k) => SETTING_VALUES[k].includes(s?.[k]));
      if (!ok) throw bad(`"${key}" is not a step kernel with rows, slices, units, wide and prefetch`);
    }
  }
  return f;
}

/**
 * Apply the settings tuned for `adapter` (what the webgpu backend calls its device) from `file`: its step settings
 * and, where it has one, its products' variant. Returns how many kernel shapes they cover (0 when the file has none
 * for it) and the variant (null: none, the default).
 */
export async function loadTunedKernels(
  adapter: string,
  file = tunedKernelsPath(),
): Promise<{ shapes: number; matmul: TunedVariant | null; generation: BurstRoute | null }> {
  const entry = (await readTuned(file))?.adapters[adapter];
  if (!entry) return { shapes: 0, matmul: null, generation: null };
  useKernelTable(entry.table);
  useMatmulVariant(entry.matmul ?? null);
  useBurstRoute(entry.generation ?? null);
  return {
    shapes: Object.keys(entry.table).length,
    matmul: entry.matmul ?? null,
    generation: entry.generation ?? null,
  };
}

/**
 * Add `table` to the settings kept for `adapter` in `file` (a shape measured again replaces its entry), and its
 * products' variant and generation route when given (else the ones kept stay); atomic.
 */
export async function saveTunedKernels(
  adapter: string,
  table: Record<string, StepSettings>,
  file = tunedKernelsPath(),
  matmul?: TunedVariant,
  generation?: BurstRoute,
): Promise<void> {
  const f: TunedFile = (await readTuned(file)) ?? { format: FORMAT, version: 1, adapters: {} };
  const before = f.adapters[adapter];
  const kept = matmul ?? before?.matmul;
  const route = generation ?? before?.generation;
  f.adapters[adapter] = {
    updated: new Date().toISOString(),
    table: { ...before?.table, ...table },
    ...(kept ? { matmul: kept } : {}),
    ...(route ? { generation: route } : {}),
  };
  await writeFileAtomic(file, JSON.stringify(f, null, 1) + "\n");
}
