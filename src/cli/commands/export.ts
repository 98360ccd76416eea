// `charlm export DIR --to torch OUT`: a checkpoint (a directory or a tar of one) as a PyTorch state_dict plus a JSON
// of architecture and tokenizer (src/interop/torch-export.ts), for the Python reference trainer in python/.
// `--to onnx`: an ONNX graph for onnxruntime (src/interop/onnx-export.ts).

import { exportCheckpointToOnnx } from "../../interop/onnx-export.js";
import { exportCheckpointToTorch } from "../../interop/torch-export.js";
import { UsageError } from "../../util/errors.js";
import { CHECKPOINT_HELP, defineCommand } from "../command.js";

export const exportCommand = defineCommand({
  name: "export",
  positionals: "DIR",
  summary: "write a checkpoint for PyTorch (state_dict, architecture, tokenizer) or as an ONNX graph",
  schema: {
    to: { type: "string", help: "target format", choices: ["torch", "onnx"], arg: "FORMAT" },
    force: { type: "bool", help: "overwrite an export already in OUT", default: false },
  },
  examples: [
    "charlm export runs/shakespeare --to torch exports/shakespeare",
    "torchrun --nproc_per_node=2 python/train.py --init exports/shakespeare --out exports/more --steps 1000",
    "charlm import exports/more --out runs/more",
    "charlm export runs/shakespeare --to onnx exports/shakespeare-onnx",
  ],
  async run(flags) {
    const [dir, out, ...rest] = flags._;
    if (!dir || !out || rest.length) {
      throw new UsageError(
        `export takes a checkpoint and an output directory: charlm export DIR --to torch|onnx OUT_DIR, where DIR is a ${CHECKPOINT_HELP}`,
      );
    }
    if (!flags.to) throw new UsageError("export needs --to torch or --to onnx (the format to write)");
    if (flags.to === "onnx") {
      const r = await exportCheckpointToOnnx(dir, out, { force: flags.force });
      process.stdout.write(
        `exported ${dir} to ${out}: model.onnx (${r.bytes.toLocaleString("en-US")} bytes; inputs and outputs: ${Object.keys(r.io).join(", ")}) and charlm-onnx.json\n`,
      );
      return;
    }
    const m = await exportCheckpointToTorch(dir, out, { force: flags.force });
    process.stdout.write(
      `exported ${dir} (${m.model.type === "rnn" ? m.model.cell : "gpt"}, step ${m.step}, vocabulary ${m.vocab.chars.length}) to ${out}: model.safetensors (PyTorch names${m.training ? "; the weights Adam steps, not their average, so that training continues exactly" : ""})${m.optimizer ? `, optimizer.safetensors (Adam at step ${m.optimizer.step})` : ""} and charlm-torch.json\n`,
    );
  },
});
