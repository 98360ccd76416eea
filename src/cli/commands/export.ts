// `charlm export DIR --to torch OUT`: a checkpoint as a PyTorch state_dict plus a JSON of architecture and
// tokenizer (src/interop/torch-export.ts), for the Python reference trainer in python/.

import { exportCheckpointToTorch } from "../../interop/torch-export.js";
import { UsageError } from "../../util/errors.js";
import { defineCommand } from "../command.js";

export const exportCommand = defineCommand({
  name: "export",
  summary: "write a checkpoint as a PyTorch state_dict (safetensors) with its architecture and tokenizer",
  schema: {
    to: { type: "string", help: "target format", choices: ["torch"], arg: "FORMAT" },
    force: { type: "bool", help: "overwrite an export already in OUT", default: false },
  },
  examples: [
    "charlm export runs/shakespeare --to torch exports/shakespeare",
    "torchrun --nproc_per_node=2 python/train.py --init exports/shakespeare --out exports/more --steps 1000",
    "charlm import exports/more --out runs/more",
  ],
  async run(flags) {
    const [dir, out, ...rest] = flags._;
    if (!dir || !out || rest.length) {
      throw new UsageError("export takes two directories: charlm export CHECKPOINT_DIR --to torch OUT_DIR");
    }
    if (!flags.to) throw new UsageError("export needs --to torch (the format to write)");
    const m = await exportCheckpointToTorch(dir, out, { force: flags.force });
    process.stdout.write(
      `exported ${dir} (${m.model.type === "rnn" ? m.model.cell : "gpt"}, step ${m.step}, vocabulary ${m.vocab.chars.length}) to ${out}: model.safetensors (PyTorch names) and charlm-torch.json\n`,
    );
  },
});
