// `charlm import EXPORT --out DIR`: a PyTorch export (from charlm export or python/train.py) as a charlm checkpoint
// that sample, eval and serve read.

import { importTorchExport } from "../../interop/torch-export.js";
import { UsageError } from "../../util/errors.js";
import { defineCommand } from "../command.js";

export const importCommand = defineCommand({
  name: "import",
  positionals: "EXPORT",
  summary: "bring a PyTorch export (charlm export, python/train.py) back as a charlm checkpoint",
  schema: {
    out: { type: "string", help: "checkpoint directory to write", arg: "DIR" },
    force: { type: "bool", help: "overwrite a checkpoint already in --out", default: false },
  },
  examples: ["charlm import exports/more --out runs/more", "charlm sample --model runs/more"],
  async run(flags) {
    const [dir, ...rest] = flags._;
    if (!dir || rest.length)
      throw new UsageError("import takes one export directory: charlm import EXPORT_DIR --out DIR");
    if (!flags.out) throw new UsageError("import needs --out DIR, the checkpoint directory to write");
    const { manifest } = await importTorchExport(dir, flags.out, { force: flags.force });
    process.stdout.write(
      `imported ${dir} (written by ${manifest.writer}, step ${manifest.step}) into ${flags.out} (sample with: charlm sample --model ${flags.out})\n`,
    );
  },
});
