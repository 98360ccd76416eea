// The loss curve written next to a checkpoint: loss.svg, training and validation loss per epoch against steps,
// drawn by the same chart module the server uses for checkpoints without a picture.

import * as path from "node:path";
import { lossChartSvg } from "../util/chart.js";
import { writeFileAtomic } from "../checkpoint/atomic.js";
import type { EpochRecord } from "../checkpoint/checkpoint.js";

/** Draw the history to `dir`/loss.svg (an atomic write) and return the file's path; see lossChartSvg. */
export async function writeLossCurve(
  dir: string,
  history: EpochRecord[],
  name: string,
  tokenizer: string,
): Promise<string> {
  const file = path.join(dir, "loss.svg");
  await writeFileAtomic(file, lossChartSvg(history, name, tokenizer) + "\n");
  return file;
}
