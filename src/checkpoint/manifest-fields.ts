// Type and range checks for the training-state fields of a checkpoint manifest (charlm.json). The model config and
// the training config have their own parsers; these are the rest: counters, losses, optimizer scalars, RNG words.
// A wrong field is reported by name here, instead of surfacing later as a TypeError in the server or as "training
// diverged" on resume.

import { CharlmError } from "../util/errors.js";

type Check = (v: unknown) => string | null; // what the value must be, or null when it is fine

const count: Check = (v) =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 ? null : "a whole number of at least 0";
const epochOrNone: Check = (v) =>
  typeof v === "number" && Number.isInteger(v) && v >= -1 ? null : "a whole number of at least -1 (-1: none yet)";
const number: Check = (v) => (typeof v === "number" && Number.isFinite(v) ? null : "a number");
const numberOrNull: Check = (v) => (v === null || number(v) === null ? null : "a number or null");
const stringOrNull: Check = (v) => (v === null || typeof v === "string" ? null : "a string or null");
const rngWords: Check = (v) =>
  Array.isArray(v) && v.length === 4 && v.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)
    ? null
    : "four whole numbers from 0 to 4294967295";
const INIT_FORMATS = ["charlm", "torch"];
const initFormat: Check = (v) =>
  INIT_FORMATS.includes(v as string) ? null : `one of ${INIT_FORMATS.map((f) => JSON.stringify(f)).join(", ")}`;
const text: Check = (v) => (typeof v === "string" && v !== "" ? null : "a non-empty string");
const STATUSES = ["running", "finished", "early-stopped", "time-limit", "stopped"];

/** Fields of an object value: checks per key; `nullable` lets the whole value be null. */
function record(fields: Record<string, Check>, nullable: boolean): (v: unknown, at: string, fail: Fail) => void {
  return (v, at, fail) => {
    if (v === null && nullable) return;
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      return fail(at, nullable ? "an object or null" : "an object", v);
    }
    for (const [key, check] of Object.entries(fields)) {
      const why = check((v as Record<string, unknown>)[key]);
      if (why) fail(`${at}.${key}`, why, (v as Record<string, unknown>)[key]);
    }
  };
}

type Fail = (field: string, want: string, got: unknown) => never;

const EPOCH_RECORD = record(
  { epoch: count, step: count, trainLoss: numberOrNull, valLoss: numberOrNull, lr: number, seconds: number },
  false,
);

/** Check the training-state fields of a parsed manifest in `file`; throws a CharlmError naming the first bad one. */
export function checkManifestFields(m: Record<string, unknown>, file: string): void {
  const fail: Fail = (field, want, got) => {
    throw new CharlmError(
      `${file}: "${field}" must be ${want}, got ${JSON.stringify(got) ?? "nothing"}; the checkpoint is damaged, train again or restore it from a copy`,
    );
  };
  // Fields that older checkpoints may lack take their defaults; present ones must be right.
  const scalar = (key: string, check: Check): void => {
    if (key in m) {
      const why = check(m[key]);
      if (why) fail(key, why, m[key]);
    }
  };
  scalar("step", count);
  scalar("epoch", count);
  scalar("stepInEpoch", count);
  scalar("bestValLoss", numberOrNull);
  scalar("elapsedSeconds", number);
  scalar("dataName", stringOrNull);
  scalar("preset", stringOrNull);
  if ("status" in m && !STATUSES.includes(m.status as string))
    fail("status", `one of ${STATUSES.join(", ")}`, m.status);
  if ("history" in m) {
    if (!Array.isArray(m.history)) fail("history", "a list of epoch records", m.history);
    (m.history as unknown[]).forEach((h, i) => EPOCH_RECORD(h, `history[${i}]`, fail));
  }
  if ("optimizer" in m) {
    record({ type: (v) => (typeof v === "string" ? null : "a string"), t: count }, true)(
      m.optimizer,
      "optimizer",
      fail,
    );
    const hyper = (m.optimizer as { hyper?: unknown } | null)?.hyper;
    if (m.optimizer !== null && (typeof hyper !== "object" || hyper === null))
      fail("optimizer.hyper", "an object", hyper);
  }
  if ("rng" in m) record({ model: rngWords, data: rngWords }, true)(m.rng, "rng", fail);
  if ("earlyStopping" in m) {
    record({ best: numberOrNull, bestEpoch: epochOrNone, wait: count }, true)(m.earlyStopping, "earlyStopping", fail);
  }
  // Runs without --ema (and older checkpoints) have no average.
  if ("average" in m) {
    const decay: Check = (v) => (typeof v === "number" && v > 0 && v < 1 ? null : "a number between 0 and 1");
    record({ decay, t: count }, true)(m.average, "average", fail);
  }
  // Older checkpoints and runs from scratch have no initFrom.
  if ("initFrom" in m) {
    record({ path: text, step: count, format: initFormat }, true)(m.initFrom, "initFrom", fail);
    const added = (m.initFrom as { addedChars?: unknown } | null)?.addedChars;
    if (added !== undefined && !(Array.isArray(added) && added.every((c) => typeof c === "string")))
      fail("initFrom.addedChars", "a list of strings", added);
  }
  if ("partialEpochLoss" in m) {
    record({ sum: number, count }, true)(m.partialEpochLoss, "partialEpochLoss", fail);
  }
}
