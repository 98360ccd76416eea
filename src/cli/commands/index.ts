// The subcommand registry: one line per command, in the order `charlm --help` lists them.

import type { Command } from "../command.js";
import type { Schema } from "../flags.js";
import { evalCommand } from "./eval.js";
import { exportCommand } from "./export.js";
import { importCommand } from "./import.js";
import { lrFindCommand } from "./lr-find.js";
import { lsCommand } from "./ls.js";
import { sampleCommand } from "./sample.js";
import { scratchCommand } from "./scratch.js";
import { serveCommand } from "./serve.js";
import { summaryCommand } from "./summary.js";
import { trainCommand } from "./train.js";
import { tuneCommand } from "./tune.js";
import { tuneGpuCommand } from "./tune-gpu.js";

export const commands: Command<Schema>[] = [
  trainCommand,
  tuneCommand,
  tuneGpuCommand,
  lrFindCommand,
  sampleCommand,
  evalCommand,
  summaryCommand,
  scratchCommand,
  serveCommand,
  exportCommand,
  importCommand,
  lsCommand,
];
