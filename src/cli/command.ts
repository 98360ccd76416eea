// The shape every subcommand has. Subcommands parse flags and call library code; they hold no model logic.

import type { Flags, Schema } from "./flags.js";

export interface Command<S extends Schema = Schema> {
  name: string;
  summary: string;
  schema: S;
  examples?: string[];
  /** CHARLM_* environment variables the command reads, listed in its --help. */
  environment?: string[];
  /** Placeholder for the positional arguments the command takes, e.g. "[DIR]"; none when absent. */
  positionals?: string;
  /** Returns the process exit code (0 when omitted). */
  run(flags: Flags<S>): Promise<number | void>;
}

/** What `--model` (and export's first argument) accepts: a trained model, as openCheckpoint (src/checkpoint) reads it. */
/** Environment variables of the commands that run the kernels, and of those that read Tiny Shakespeare. */
export const KERNEL_ENV = ["CHARLM_THREADS", "CHARLM_WASM_BUILD", "CHARLM_WEBGPU_RECURRENT"];
export const DATA_ENV = ["CHARLM_TINYSHAKESPEARE", "CHARLM_CACHE_DIR"];

export const CHECKPOINT_HELP =
  "checkpoint directory (the --out of charlm train), or a .tar of one (the web page's download)";

/** Helper that keeps the schema's literal type for `run`'s flags. */
export function defineCommand<S extends Schema>(c: Command<S>): Command<S> {
  return c;
}
