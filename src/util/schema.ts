// Field specifications shared by configs and command-line flags: a type, a one-line help, a default, a range or a
// list of choices. The training config declares its fields with these (src/train/config.ts); the CLI parses argv
// against them (src/cli/flags.ts). Keys are camelCase; their flags are --kebab-case.

import { UsageError } from "./errors.js";

export type FlagType = "int" | "float" | "string" | "bool" | "strings";

export interface FlagSpec {
  type: FlagType;
  /** One line for --help. */
  help: string;
  default?: number | string | boolean | string[];
  /** Inclusive lower bound for numbers. */
  min?: number;
  /** Exclusive lower bound for numbers (e.g. temperature > 0). */
  above?: number;
  /** Inclusive upper bound for numbers. */
  max?: number;
  /** Allowed values for strings. */
  choices?: readonly string[];
  /** Placeholder in --help, e.g. FILE. */
  arg?: string;
  /** Strings: turn the escapes \n, \t and \\ into a newline, a tab and a backslash (shells pass them as typed). */
  escapes?: boolean;
}

export type Schema = Record<string, FlagSpec>;

export const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

/** Range check shared by flags and config files: throws a UsageError naming `what`. */
export function checkRange(what: string, spec: Pick<FlagSpec, "min" | "max" | "above">, x: number): void {
  if (spec.min !== undefined && x < spec.min) throw new UsageError(`${what} must be at least ${spec.min}, got ${x}`);
  if (spec.above !== undefined && x <= spec.above)
    throw new UsageError(`${what} must be above ${spec.above}, got ${x}`);
  if (spec.max !== undefined && x > spec.max) throw new UsageError(`${what} must be at most ${spec.max}, got ${x}`);
}
