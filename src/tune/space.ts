// The search space of `charlm tune`: which training config fields vary, and how each is drawn.
//
//   --space lr=log:1e-4:1e-2     log-uniform between the bounds
//   --space dropout=0:0.5        uniform between the bounds (whole numbers for integer fields)
//   --space units=128,256,512    one of the listed values, equally likely
//   --space init=keras,torch
//
// A JSON space file holds the same specs keyed by field: {"lr": "log:1e-4:1e-2", "units": [128, 256, 512],
// "dropout": {"min": 0, "max": 0.5}, "seqLength": {"min": 50, "max": 200, "log": true}}. Every key must be a training
// config field (camelCase or the flag's kebab-case) and every value it can produce must pass that field's checks,
// so a bad space fails before any trial starts, with one line naming the spec.

import type { FlagSpec } from "../cli/flags.js";
import { TRAIN_FIELDS, checkField, type TrainConfig } from "../train/config.js";
import { CharlmError } from "../util/errors.js";
import type { Rng } from "../util/rng.js";

export type Value = number | string | boolean;

export type Dimension =
  | { key: keyof TrainConfig; kind: "range"; lo: number; hi: number; log: boolean; int: boolean }
  | { key: keyof TrainConfig; kind: "choice"; values: Value[] };

const camel = (key: string): string => key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function fieldFor(rawKey: string, where: string): [keyof TrainConfig, FlagSpec] {
  const key = camel(rawKey.trim());
  const spec = (TRAIN_FIELDS as Record<string, FlagSpec | undefined>)[key];
  if (!spec) {
    throw new CharlmError(
      `${where}: "${rawKey}" is not a training config field; use one of ${Object.keys(TRAIN_FIELDS).join(", ")}`,
    );
  }
  return [key as keyof TrainConfig, spec];
}

/** A field's value from the text of a spec: numbers for number fields, true/false for booleans, else the string. */
function valueFrom(text: string, spec: FlagSpec, where: string): Value {
  const t = text.trim();
  if (spec.type === "int" || spec.type === "float") {
    const x = Number(t);
    if (t === "" || !Number.isFinite(x)) throw new CharlmError(`${where}: '${text}' is not a number`);
    return x;
  }
  if (spec.type === "bool") {
    if (t !== "true" && t !== "false") throw new CharlmError(`${where}: '${text}' must be true or false`);
    return t === "true";
  }
  return t;
}

function checked(key: keyof TrainConfig, value: Value, where: string): Value {
  checkField(key, value, where);
  return value;
}

function range(key: keyof TrainConfig, spec: FlagSpec, lo: number, hi: number, log: boolean, where: string): Dimension {
  if (spec.type !== "int" && spec.type !== "float") {
    throw new CharlmError(`${where}: ${key} is not a number field; list its values instead (a,b,c)`);
  }
  if (!(lo < hi)) throw new CharlmError(`${where}: the lower bound ${lo} must be below the upper bound ${hi}`);
  if (log && lo <= 0) throw new CharlmError(`${where}: a log range needs bounds above 0, got ${lo}`);
  const int = spec.type === "int";
  for (const x of [lo, hi]) checked(key, int ? Math.round(x) : x, where);
  return { key, kind: "range", lo, hi, log, int };
}

/** One `key=spec` argument of --space. */
export function parseSpaceArg(arg: string): Dimension {
  const where = `--space ${arg}`;
  const eq = arg.indexOf("=");
  if (eq <= 0 || eq === arg.length - 1) {
    throw new CharlmError(`${where}: write key=spec, e.g. lr=log:1e-4:1e-2, dropout=0:0.5 or units=128,256`);
  }
  const [key, spec] = fieldFor(arg.slice(0, eq), where);
  return parseSpec(key, spec, arg.slice(eq + 1), where);
}

function parseSpec(key: keyof TrainConfig, spec: FlagSpec, text: string, where: string): Dimension {
  const parts = text.split(":");
  const num = (t: string): number => Number(valueFrom(t, spec, where));
  const isRange = (parts[0] === "log" && parts.length === 3) || parts.length === 2;
  if (isRange && spec.type !== "int" && spec.type !== "float") {
    throw new CharlmError(`${where}: ${key} is not a number field; list its values instead (a,b,c)`);
  }
  if (parts[0] === "log" && parts.length === 3) return range(key, spec, num(parts[1]), num(parts[2]), true, where);
  if (parts.length === 2) return range(key, spec, num(parts[0]), num(parts[1]), false, where);
  if (parts.length !== 1) {
    throw new CharlmError(`${where}: '${text}' is not a spec; write log:LO:HI, LO:HI or a list a,b,c`);
  }
  return choices(
    key,
    spec,
    text.split(",").map((v) => valueFrom(v, spec, where)),
    where,
  );
}

function choices(key: keyof TrainConfig, spec: FlagSpec, values: Value[], where: string): Dimension {
  if (values.length === 0) throw new CharlmError(`${where}: list at least one value`);
  for (const v of values) checked(key, v, where);
  return { key, kind: "choice", values };
}

/** A JSON space file's object: field -> "spec" | [values] | {min, max, log?}. */
export function parseSpaceJson(raw: unknown, file: string): Dimension[] {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CharlmError(`${file}: expected a JSON object like {"lr": "log:1e-4:1e-2", "units": [128, 256]}`);
  }
  return Object.entries(raw).map(([rawKey, v]) => {
    const where = `${file}: ${rawKey}`;
    const [key, spec] = fieldFor(rawKey, file);
    if (typeof v === "string") return parseSpec(key, spec, v, where);
    if (Array.isArray(v)) {
      const ok = v.every((x) => typeof x === "number" || typeof x === "string" || typeof x === "boolean");
      if (!ok) throw new CharlmError(`${where}: list numbers, strings or booleans`);
      return choices(key, spec, v as Value[], where);
    }
    if (typeof v === "object" && v !== null && "min" in v && "max" in v) {
      const { min, max, log } = v as { min: unknown; max: unknown; log?: unknown };
      if (typeof min !== "number" || typeof max !== "number" || (log !== undefined && typeof log !== "boolean")) {
        throw new CharlmError(`${where}: write {"min": number, "max": number, "log": true or false}`);
      }
      return range(key, spec, min, max, log === true, where);
    }
    throw new CharlmError(`${where}: write "log:LO:HI", "LO:HI", a list of values, or {"min": LO, "max": HI}`);
  });
}

/** Refuse a field given twice. */
export function checkDistinct(space: Dimension[]): void {
  const seen = new Set<string>();
  for (const d of space) {
    if (seen.has(d.key)) throw new CharlmError(`the search space gives ${d.key} twice; give each field once`);
    seen.add(d.key);
  }
}

/** One point of the space, drawn from rng (one draw per dimension, in order). */
export function sample(space: Dimension[], rng: Rng): Partial<TrainConfig> {
  const out: Record<string, Value> = {};
  for (const d of space) {
    if (d.kind === "choice") {
      out[d.key] = d.values[rng.int(d.values.length)];
      continue;
    }
    const u = rng.random();
    let x = d.log ? Math.exp(Math.log(d.lo) + u * (Math.log(d.hi) - Math.log(d.lo))) : d.lo + u * (d.hi - d.lo);
    // Whole numbers for integer fields; other numbers to 4 significant digits, for a readable table and config.
    x = d.int ? Math.round(x) : Number(x.toPrecision(4));
    out[d.key] = Math.min(Math.max(x, d.int ? Math.ceil(d.lo) : d.lo), d.int ? Math.floor(d.hi) : d.hi);
  }
  return out as Partial<TrainConfig>;
}

/** The space as the --space arguments that give it back (for the state file and the report). */
export function formatDimension(d: Dimension): string {
  if (d.kind === "choice") return `${d.key}=${d.values.join(",")}`;
  return `${d.key}=${d.log ? "log:" : ""}${d.lo}:${d.hi}`;
}
