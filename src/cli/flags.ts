// Command-line flags from one schema: the parser, the type checks and `--help` all read the same table,
// so a flag cannot be documented one way and parsed another. Keys are camelCase; flags are --kebab-case.

import { UsageError } from "../util/errors.js";
import { checkRange, kebab, type FlagSpec, type Schema } from "../util/schema.js";

export { checkRange, kebab, type FlagSpec, type FlagType, type Schema } from "../util/schema.js";

type ValueOf<F extends FlagSpec> = F["type"] extends "int" | "float"
  ? number
  : F["type"] extends "bool"
    ? boolean
    : F["type"] extends "strings"
      ? string[]
      : string;

/** Parsed flags: fields with a default are always present; the rest may be undefined. */
export type Flags<S extends Schema> = {
  [K in keyof S]: S[K] extends { default: unknown } ? ValueOf<S[K]> : ValueOf<S[K]> | undefined;
} & { _: string[]; _given: Set<string> };

/**
 * Parse argv against a schema. `--name value`, `--name=value`, `--flag`/`--no-flag` for booleans; repeating a
 * `strings` flag appends. Unknown flags, missing values, wrong types and out-of-range numbers throw a UsageError
 * naming the flag and the fix.
 */
export function parseFlags<S extends Schema>(argv: string[], schema: S, command: string): Flags<S> {
  const byFlag = new Map<string, string>();
  for (const key of Object.keys(schema)) byFlag.set(kebab(key), key);
  const out: Record<string, unknown> = {};
  const given = new Set<string>();
  const positionals: string[] = [];
  for (const [key, spec] of Object.entries(schema)) {
    if (spec.default !== undefined) out[key] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("--")) {
      if (/^-[A-Za-z]/.test(arg)) {
        throw new UsageError(
          `unknown flag ${arg} for 'charlm ${command}'; flags start with -- (run 'charlm ${command} --help' for the list)`,
        );
      }
      positionals.push(arg);
      continue;
    }
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf("=");
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    let key = byFlag.get(name);
    let negated = false;
    if (key === undefined && name.startsWith("no-") && schema[byFlag.get(name.slice(3)) ?? ""]?.type === "bool") {
      key = byFlag.get(name.slice(3));
      negated = true;
    }
    if (key === undefined) {
      throw new UsageError(
        `unknown flag --${name} for 'charlm ${command}'; run 'charlm ${command} --help' for the list`,
      );
    }
    const spec = schema[key];
    // Only list flags may repeat: a second value would otherwise silently replace the first.
    const repeated = (v: string): never => {
      throw new UsageError(`--${name} given twice ('${shownValue(out[key])}' and '${v}'); give it once`);
    };
    if (spec.type === "bool") {
      if (given.has(key)) repeated(value ?? String(!negated));
      if (value === undefined) out[key] = !negated;
      else if (value === "true" || value === "false") out[key] = value === "true";
      else throw new UsageError(`--${name} takes true or false, got '${value}'`);
      given.add(key);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length)
        throw new UsageError(`--${name} needs a value (${spec.arg ?? spec.type}); ${spec.help}`);
      value = argv[++i];
    }
    if (given.has(key) && spec.type !== "strings") repeated(value);
    const parsed = parseValue(name, spec, value);
    if (spec.type === "strings") {
      out[key] = given.has(key) ? [...(out[key] as string[]), parsed as string] : [parsed as string];
    } else {
      out[key] = parsed;
    }
    given.add(key);
  }
  out._ = positionals;
  out._given = given;
  return out as Flags<S>;
}

const shownValue = (v: unknown): string => (Array.isArray(v) ? v.join(",") : String(v));

function parseValue(name: string, spec: FlagSpec, raw: string): unknown {
  if (spec.type === "int" || spec.type === "float") {
    const x = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(x)) throw new UsageError(`--${name} must be a number, got '${raw}'`);
    if (spec.type === "int" && !Number.isInteger(x))
      throw new UsageError(`--${name} must be a whole number, got '${raw}'`);
    checkRange(`--${name}`, spec, x);
    return x;
  }
  if (spec.choices && !spec.choices.includes(raw)) {
    throw new UsageError(`--${name} must be one of ${spec.choices.join(", ")}; got '${raw}'`);
  }
  return spec.escapes ? unescape(raw) : raw;
}

/** \n, \t and \\ to a newline, a tab and a backslash; any other backslash stays as typed. */
export function unescape(text: string): string {
  return text.replace(/\\([nt\\])/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"));
}

/** --help text generated from the schema. */
export function helpText(
  command: string,
  summary: string,
  schema: Schema,
  examples: string[] = [],
  positionals = "",
): string {
  const rows = Object.entries(schema).map(([key, spec]) => {
    const left = `  --${kebab(key)}${spec.type === "bool" ? "" : ` ${spec.arg ?? spec.type.toUpperCase()}`}`;
    const bits = [spec.help + (spec.escapes ? " (\\n, \\t, \\\\ understood)" : "")];
    if (spec.choices) bits.push(`(${spec.choices.join("|")})`);
    if (spec.default !== undefined && spec.default !== "" && !(Array.isArray(spec.default) && !spec.default.length)) {
      bits.push(`[default: ${Array.isArray(spec.default) ? spec.default.join(",") : spec.default}]`);
    }
    return [left, bits.join(" ")];
  });
  const width = Math.max(...rows.map(([l]) => l.length), 10) + 2;
  const usage = `Usage: charlm ${command}${positionals ? " " + positionals : ""} [options]`;
  const lines = [`charlm ${command}: ${summary}`, "", usage, "", "Options:"];
  for (const [l, r] of rows) lines.push(l.padEnd(width) + r);
  if (examples.length) lines.push("", "Examples:", ...examples.map((e) => "  " + e));
  return lines.join("\n") + "\n";
}
