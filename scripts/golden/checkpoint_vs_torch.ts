// PyTorch's nn.LSTM/GRU/RNN with weights copied from a charlm checkpoint give charlm's logits (within 1e-4).
//
//   npx tsx scripts/golden/checkpoint_vs_torch.ts CHECKPOINT_DIR [--text "ROMEO:"]
//   npx tsx scripts/golden/checkpoint_vs_torch.ts --demo      (trains nothing: saves a small random model first)
//
// Loads the checkpoint, runs charlm's forward on the text (default: a line of Shakespeare, or random tokens when its
// characters are not in the vocabulary), writes the tokens and logits to a temporary JSON file and hands it to
// checkpoint_vs_torch.py, which reads model.safetensors itself and compares.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Vocab } from "../../src/data/vocab.js";
import { noGrad } from "../../src/engine/index.js";
import { buildModel } from "../../src/models/registry.js";
import { loadCheckpoint, saveCheckpoint } from "../../src/checkpoint/checkpoint.js";
import { Rng } from "../../src/util/rng.js";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const tmp = mkdtempSync(join(tmpdir(), "charlm-golden-"));
try {
  let dir = args.find((a, i) => !a.startsWith("--") && args[i - 1] !== "--text");
  if (args.includes("--demo")) {
    dir = join(tmp, "ckpt");
    const text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
    const vocab = Vocab.build(text);
    const model = buildModel(
      { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 16, units: 48, layers: 2, dropout: 0 },
      new Rng(1),
    );
    await saveCheckpoint(dir, { model, vocab });
  }
  if (!dir) {
    console.error("usage: npx tsx scripts/golden/checkpoint_vs_torch.ts CHECKPOINT_DIR [--text TEXT] | --demo");
    process.exit(2);
  }
  const { model, vocab } = await loadCheckpoint(dir);
  const ti = args.indexOf("--text");
  const text = ti >= 0 ? args[ti + 1] : "First Citizen:\nBefore we proceed any further, hear me speak.";
  let tokens: Int32Array;
  if (vocab.unknownChars(text).length === 0) {
    tokens = vocab.encode(text);
  } else {
    const rng = new Rng(0);
    tokens = Int32Array.from({ length: 64 }, () => rng.int(vocab.size));
  }
  const T = tokens.length;
  const logits = noGrad(() => model.forward(tokens, 1, T).logits);
  const file = join(tmp, "logits.json");
  writeFileSync(file, JSON.stringify({ B: 1, T, tokens: Array.from(tokens), logits: Array.from(logits.data) }));
  const r = spawnSync("/usr/bin/python3", [join(here, "checkpoint_vs_torch.py"), dir, file], { stdio: "inherit" });
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
