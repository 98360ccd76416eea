// `charlm ls [DIR]`: one line per run under DIR (default runs/): status, epochs, best validation loss, model, data.

import { listRuns } from "../../checkpoint/runs.js";
import { defineCommand } from "../command.js";
import { UsageError } from "../../util/errors.js";

export const lsCommand = defineCommand({
  name: "ls",
  summary: "list the training runs in a directory (default runs/) with their status and best validation loss",
  schema: {
    json: { type: "bool", help: "print one JSON document {runs: [...]} instead of a table", default: false },
  },
  positionals: "[DIR]",
  examples: ["charlm ls", "charlm ls runs --json"],
  async run(flags) {
    if (flags._.length > 1) throw new UsageError(`ls takes one directory, got ${flags._.length}: ${flags._.join(" ")}`);
    const runs = await listRuns(flags._[0] ?? "runs");
    if (flags.json) {
      process.stdout.write(JSON.stringify({ runs }) + "\n");
      return;
    }
    const rows = [
      ["RUN", "STATUS", "EPOCHS", "BEST VAL", "MODEL", "DATA"],
      ...runs.map((r) => [
        r.name,
        r.status,
        r.epochs === null ? String(r.epoch) : `${r.epoch}/${r.epochs}`,
        r.bestValLoss === null ? "-" : r.bestValLoss.toFixed(4),
        r.model,
        r.data ?? "-",
      ]),
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)) + 2);
    for (const row of rows)
      process.stdout.write(row.map((c, i) => (i < row.length - 1 ? c.padEnd(widths[i]) : c)).join("") + "\n");
    for (const r of runs) if (r.problem) process.stderr.write(`${r.name}: ${r.problem}\n`);
  },
});
