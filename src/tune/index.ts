// `tune(options)`: a hyperparameter search over charlm training runs (see search.ts), its results written next to
// the trials (see report.ts), and optionally the best trial's settings as a config `charlm train --config` takes.

import { writeFileAtomic } from "../checkpoint/atomic.js";
import type { TrainConfig } from "../train/config.js";
import { CharlmError } from "../util/errors.js";
import { writeReports, type ResultRow } from "./report.js";
import { runSearch, trialConfig, type SearchState, type TuneOptions } from "./search.js";

export { parseSpaceArg, parseSpaceJson, sample, type Dimension } from "./space.js";
export { formatTable, resultRows, type ResultRow } from "./report.js";
export type { SearchState, TrialRecord, TuneOptions, Strategy, BudgetUnit } from "./search.js";
export { lrRangeTest, suggestRate, type LrFindOptions, type LrFindResult, type LrPoint } from "./lr-find.js";

export interface TuneResult {
  status: "finished" | "interrupted";
  state: SearchState;
  /** Every trial, best validation loss first. */
  rows: ResultRow[];
  /** The best trial's full training config, or null when no trial has a validation loss. */
  best: TrainConfig | null;
}

/** Run or continue the search in `options.out`; with `apply`, write the best trial's config to that file. */
export async function tune(options: TuneOptions & { apply?: string }): Promise<TuneResult> {
  const { state, status } = await runSearch(options);
  const rows = await writeReports(options.out, state);
  const top = rows[0]?.bestValLoss != null ? state.trials.find((t) => t.id === rows[0].trial)! : null;
  const best = top ? await trialConfig(options.out, top) : null;
  if (options.apply) {
    if (!best)
      throw new CharlmError(`--apply ${options.apply}: no trial has a validation loss yet, so there is no best`);
    await writeFileAtomic(options.apply, JSON.stringify(best, null, 2) + "\n");
  }
  return { status, state, rows, best };
}
