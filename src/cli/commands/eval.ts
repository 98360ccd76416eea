// `charlm eval`: the loss of a trained model on a split of its corpus: per token (nats, bits, perplexity) and per
// character of the original text (nats/char, bits/char; see evaluate.ts), which compares models with different
// tokenizers. A word model also reports the share of "<unk>" among the tokens and charges them as word.ts says.

import { loadSplits } from "../../data/corpus.js";
import { backendFlag, selectBackend, threadsFlag } from "../backend.js";
import { loadCheckpoint } from "../../checkpoint/checkpoint.js";
import { evaluate } from "../../train/evaluate.js";
import { CharlmError, UsageError } from "../../util/errors.js";
import { CHECKPOINT_HELP, DATA_ENV, KERNEL_ENV, defineCommand } from "../command.js";

export const evalCommand = defineCommand({
  name: "eval",
  environment: [...KERNEL_ENV, ...DATA_ENV],
  summary: "measure a trained model's loss on the test, validation or train split",
  schema: {
    model: { type: "string", help: CHECKPOINT_HELP, arg: "DIR" },
    split: { type: "string", help: "which split", default: "test", choices: ["test", "validation", "train"] },
    data: { type: "string", help: "corpus (default: the one the model was trained on)", arg: "FILE" },
    seqLength: { type: "int", help: "tokens per window (default: the training sequence length)", min: 1 },
    batchSize: { type: "int", help: "windows per forward pass", default: 32, min: 1 },
    carry: {
      type: "bool",
      help: "carry the hidden state across windows (default: on for models trained with stream batching)",
      default: false,
    },
    maxChars: { type: "int", help: "evaluate only the first N tokens (0 = all)", default: 0, min: 0, arg: "N" },
    backend: backendFlag,
    threads: threadsFlag,
    json: { type: "bool", help: "print one JSON object instead of text", default: false },
  },
  examples: [
    "charlm eval --model runs/shakespeare --split test",
    "charlm eval --model runs/mine --split validation --carry",
  ],
  async run(flags) {
    if (!flags.model) throw new UsageError(`eval needs --model DIR, a ${CHECKPOINT_HELP}`);
    const backend = await selectBackend(flags.backend, flags.threads);
    const { model, vocab, manifest } = await loadCheckpoint(flags.model);
    const data = flags.data ?? manifest.train?.data ?? "tinyshakespeare";
    const splits = await loadSplits(data, { validationFraction: manifest.train?.validationFraction ?? 0.1 });
    const text = flags.split === "test" ? splits.test : flags.split === "validation" ? splits.validation : splits.train;
    if (text === undefined) {
      throw new CharlmError(
        `${splits.name} has no test split (custom corpora have train and validation); use --split validation`,
      );
    }
    const measured = vocab.measure(text);
    const ids = measured.ids;
    const T = flags.seqLength ?? manifest.train?.seqLength ?? 100;
    process.stderr.write(`${backend.line}\n`);
    const t0 = performance.now();
    const carry = flags._given.has("carry") ? flags.carry : manifest.train?.batching === "stream";
    const r = await evaluate(model, ids, {
      B: flags.batchSize,
      T,
      carry,
      maxChars: flags.maxChars,
      text: { ends: measured.ends, extra: measured.extra, unk: vocab.unk },
    });
    const seconds = (performance.now() - t0) / 1000;
    if (flags.json) {
      const tokenizer = vocab.kind;
      process.stdout.write(JSON.stringify({ split: flags.split, data: splits.name, tokenizer, ...r, seconds }) + "\n");
      return;
    }
    const lines =
      vocab.kind === "char"
        ? [
            `${splits.name} ${flags.split}: ${r.chars.toLocaleString("en-US")} characters, windows of ${T}${carry ? " with carried state" : ""}`,
            `  loss        ${r.nats.toFixed(4)} nats/char`,
            `              ${r.bits.toFixed(4)} bits/char`,
            `  perplexity  ${r.perplexity.toFixed(3)}`,
          ]
        : [
            `${splits.name} ${flags.split}: ${r.chars.toLocaleString("en-US")} tokens (${vocab.describe()}) covering ${r.textChars.toLocaleString("en-US")} characters, windows of ${T}${carry ? " with carried state" : ""}`,
            `  loss        ${r.nats.toFixed(4)} nats/token  ${r.bits.toFixed(4)} bits/token  perplexity ${r.perplexity.toFixed(3)}`,
            `  per char    ${r.natsPerChar.toFixed(4)} nats/char   ${r.bitsPerChar.toFixed(4)} bits/char`,
            ...(vocab.kind === "word"
              ? [
                  `  <unk>       ${(100 * r.unknownShare).toFixed(2)}% of the tokens, each charged ln ${(vocab.serialize() as { charCount: number }).charCount} nats per character of its word`,
                ]
              : []),
          ];
    process.stdout.write([...lines, `  (${seconds.toFixed(1)} s)`].join("\n") + "\n");
  },
});
