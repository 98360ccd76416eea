// `charlm sample`: load a checkpoint and stream generated text to stdout as it is produced.

import { backendFlag, selectBackend, threadsFlag } from "../backend.js";
import { freshSeed, generate, checkGenerateOptions, checkWindowStride } from "../../sample/generate.js";
import { loadCheckpoint } from "../../checkpoint/checkpoint.js";
import { UsageError } from "../../util/errors.js";
import { CHECKPOINT_HELP, KERNEL_ENV, defineCommand } from "../command.js";

export const sampleCommand = defineCommand({
  name: "sample",
  environment: KERNEL_ENV,
  summary: "generate text from a trained model, streamed as it is produced",
  schema: {
    model: { type: "string", help: CHECKPOINT_HELP, arg: "DIR" },
    prime: { type: "string", help: "text to start from (the model reads it first)", default: "", escapes: true },
    length: { type: "int", help: "tokens to generate per sample (characters for a char model)", default: 500, min: 0 },
    temperature: { type: "float", help: "sharpness: below 1 safer, above 1 wilder", default: 1, above: 0 },
    topK: { type: "int", help: "keep only the K most likely characters (0 = all)", default: 0, min: 0, arg: "K" },
    topP: {
      type: "float",
      help: "nucleus: keep the likeliest characters up to this probability",
      default: 1,
      above: 0,
      max: 1,
      arg: "P",
    },
    seed: { type: "int", help: "random seed (sample i uses seed + i); default: random", min: 0, max: 0xffffffff },
    stop: {
      type: "strings",
      help: "stop a sample when this text appears (repeatable)",
      arg: "TEXT",
      escapes: true,
    },
    windowStride: {
      type: "int",
      help: "a GPT past its window: drop S of its oldest characters at once, about S times as fast (default 1: each character sees the whole window)",
      min: 1,
      arg: "S",
    },
    numSamples: { type: "int", help: "how many samples", default: 1, min: 1, arg: "N" },
    backend: backendFlag,
    threads: threadsFlag,
    json: {
      type: "bool",
      help: "print one JSON document {samples: [{seed, text}]} at the end instead",
      default: false,
    },
  },
  examples: [
    'charlm sample --model runs/shakespeare --prime "ROMEO:" --length 500 --temperature 0.8',
    'charlm sample --model runs/shakespeare --top-p 0.9 --seed 7 --num-samples 3 --stop "\\n\\n"',
    "charlm sample --model runs/gpt --length 2000 --window-stride 64",
  ],
  async run(flags) {
    if (!flags.model) throw new UsageError(`sample needs --model DIR, a ${CHECKPOINT_HELP}`);
    const backend = await selectBackend(flags.backend, flags.threads);
    const { model, vocab } = await loadCheckpoint(flags.model);
    const base = {
      prime: flags.prime,
      length: flags.length,
      temperature: flags.temperature,
      topK: flags.topK,
      topP: flags.topP,
      stop: flags.stop,
      windowStride: flags.windowStride,
    };
    checkGenerateOptions(vocab, base);
    checkWindowStride(model, base);
    process.stderr.write(`${backend.line}\n`);
    const seed0 = flags.seed ?? freshSeed();
    const abort = new AbortController();
    const onSigint = (): void => abort.abort();
    process.on("SIGINT", onSigint);
    const samples: { seed: number; text: string }[] = [];
    // Text goes to stdout as it is made; the headers between samples go to stderr, so stdout is the text alone.
    const write = (s: string): void => void (flags.json || process.stdout.write(s));
    try {
      for (let i = 0; i < flags.numSamples; i++) {
        const seed = (seed0 + i) >>> 0;
        if (flags.numSamples > 1 && !flags.json)
          process.stderr.write(`--- sample ${i + 1}/${flags.numSamples} (seed ${seed}) ---\n`);
        if (i) write("\n");
        write(flags.prime);
        let text = flags.prime;
        let buf = "";
        for await (const ch of generate(model, vocab, { ...base, seed, signal: abort.signal })) {
          buf += ch;
          text += ch;
          // Flush at line ends and every few characters: streaming without a write call per character.
          if (ch.endsWith("\n") || buf.length >= 8) {
            write(buf);
            buf = "";
          }
        }
        write(buf + "\n");
        samples.push({ seed, text });
        if (abort.signal.aborted) break;
      }
      if (flags.json) process.stdout.write(JSON.stringify({ samples }) + "\n");
      if (abort.signal.aborted) return 130;
    } finally {
      process.off("SIGINT", onSigint);
    }
  },
});
