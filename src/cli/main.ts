// charlm's entry point: pick the subcommand, parse its flags, run it, and turn a CharlmError into one line.

import { pathToFileURL } from "node:url";
import { closeBackends } from "../engine/backends/index.js";
import { CharlmError, UsageError } from "../util/errors.js";
import type { Command } from "./command.js";
import { helpText, parseFlags, type Schema } from "./flags.js";
import { commands } from "./commands/index.js";

/** Environment variables charlm reads, for --help. */
export const ENVIRONMENT: Record<string, string> = {
  CHARLM_THREADS: "threads of the wasm kernels (Node only; default: the cores up to 16; --threads wins; same bits)",
  CHARLM_TINYSHAKESPEARE: "path of a local Tiny Shakespeare input.txt, used instead of the cache or a download",
  CHARLM_CACHE_DIR: "where downloads are cached (default $XDG_CACHE_HOME/charlm, else ~/.cache/charlm)",
  CHARLM_WASM_BUILD: "plain or relaxed: force one build of the wasm kernels (default: the fastest that runs)",
  CHARLM_WEBGPU_RECURRENT:
    "step, sequence or products: webgpu runs a recurrent time loop as a dispatch per step, one per sequence, or a tiled product and a gate kernel per step (default: step, or a tuned table's choice)",
  CHARLM_WEBGPU_ROWS: "1, 2, 4 or 8: batch rows per webgpu thread in the recurrent kernels (tuning)",
  CHARLM_WEBGPU_SPLIT:
    "1, 2, 4 or 8: slices of each dot product in webgpu's step-layout recurrent kernels, parts along K in the products layout (tuning)",
  CHARLM_WEBGPU_ATTENTION:
    "matmul (default) or rows: webgpu's attention as batched matrix products, or a thread per row",
  CHARLM_WEBGPU_UNITS: "1, 2 or 4: hidden units per thread in webgpu's backward recurrent steps (tuning; default 2)",
  CHARLM_WEBGPU_WIDE: "0 or 1: wide tiles in webgpu's step-layout recurrent kernels (tuning; default: forward steps)",
  CHARLM_WEBGPU_PREFETCH:
    "0 or 1: webgpu's step-layout recurrent kernels load the next tile ahead (tuning; default: backward steps)",
  CHARLM_WEBGPU_AHEAD:
    "0 or 1: with prefetching, webgpu's step kernels load their weights a chunk of k ahead where a tile's do not fit (tuning; default 0)",
  CHARLM_WEBGPU_VEC4:
    "0 or 1: webgpu's recurrent kernels hold their tile of row values as vec4s, read 4 at once (tuning; default 1)",
  CHARLM_WEBGPU_BURST:
    "wide, fused or 0: webgpu generates a recurrent model's bursts of characters in a kernel per layer a character spread over the GPU (wide, the default; 1 means the default too), in one kernel each (fused), or a step's kernels per character (0)",
  CHARLM_WEBGPU_BURST_BYTES:
    "N: weight bytes one of webgpu's generation dispatches may read (tokens times the model's weights; default 64 MiB)",
  CHARLM_WEBGPU_KERNELS:
    "a JSON table of step settings per recurrent kernel and shape, as bench/gpu_kernels.ts --table writes it (tuning)",
  CHARLM_WEBGPU_SPLITK: "N: split webgpu's long products along K up to N workgroups (tuning; default 2048)",
  CHARLM_WEBGPU_MATMUL:
    "auto, 64, 128, 64v, 128v, 64p, 128p, 64d, 128d, auto-128, auto-128v, auto-128p or auto-128d: the output tile of webgpu's matrix products, v read as vec4s, p prefetched, d both and double-buffered (tuning; default auto: 128v where a product fills the GPU, else 64; auto-128 takes 128 there)",
  CHARLM_DAWN_OPTIONS: "Dawn's own options for the webgpu backend in Node, space-separated (e.g. backend=vulkan)",
};

/** One exit code per kind of outcome, for --help and the docs. */
export const EXIT_CODES: [number, string][] = [
  [0, "success"],
  [1, "bad input or failed work: a missing, unreadable or damaged file, corpus or checkpoint; training diverged"],
  [2, "bad command line: unknown command or flag, a bad value, a stray argument, conflicting flags"],
  [3, "busy: another process holds it (a checkpoint directory being trained, a port in use)"],
  [130, "interrupted by Ctrl-C (train and scratch save a checkpoint first)"],
  [143, "stopped by SIGTERM (train and scratch save a checkpoint first)"],
];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    "charlm: character-level language models: train on any corpus, generate text.",
    "",
    "Usage: charlm <command> [options]    (charlm help <command>, or charlm <command> --help, for its options)",
    "",
    "Commands:",
    ...commands.map((c) => "  " + c.name.padEnd(width) + c.summary),
    "",
    environmentHelp(Object.keys(ENVIRONMENT)),
    "Exit codes:",
    ...EXIT_CODES.map(([code, what]) => `  ${String(code).padEnd(5)}${what}`),
    "",
  ].join("\n");
}

function environmentHelp(names: string[]): string {
  const width = Math.max(...names.map((n) => n.length)) + 2;
  return ["Environment:", ...names.map((n) => `  ${n.padEnd(width)}${ENVIRONMENT[n]}`), ""].join("\n");
}

function commandHelp(command: Command<Schema>): string {
  const text = helpText(command.name, command.summary, command.schema, command.examples, command.positionals);
  return command.environment?.length ? `${text}\n${environmentHelp(command.environment)}` : text;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || (name === "help" && !rest.length)) {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") {
    process.stdout.write("charlm 0.1.0\n");
    return 0;
  }
  const wanted = name === "help" ? rest[0] : name;
  const command = commands.find((c) => c.name === wanted);
  if (!command) {
    process.stderr.write(`charlm: unknown command '${wanted}'; run 'charlm --help' for the list\n`);
    return 2;
  }
  if (name === "help" || rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(commandHelp(command));
    return 0;
  }
  try {
    const flags = parseFlags(rest, command.schema, command.name);
    if (!command.positionals && flags._.length) {
      throw new UsageError(
        `unexpected argument '${flags._[0]}' for 'charlm ${command.name}'; flags start with -- (run 'charlm ${command.name} --help')`,
      );
    }
    return (await command.run(flags)) ?? 0;
  } catch (err) {
    if (err instanceof CharlmError) {
      process.stderr.write(`charlm ${command.name}: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } finally {
    // A GPU device keeps Node running until it is destroyed; the wasm workers are stopped too.
    await closeBackends();
  }
}
