// Safetensors round trips and damaged-file refusal; checkpoints: save/load, manifest checks (missing, wrong format,
// wrong version), truncated and edited weights, and the two-phase save surviving an interruption.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync, renameSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Vocab } from "../src/data/vocab.js";
import { buildModel } from "../src/models/registry.js";
import {
  LOCK,
  MANIFEST,
  WEIGHTS,
  loadCheckpoint,
  openForWriting,
  prettyJson,
  readManifest,
  readSafetensors,
  saveCheckpoint,
  writeSafetensors,
} from "../src/checkpoint/checkpoint.js";
import { decodeSafetensors, encodeSafetensors } from "../src/checkpoint/safetensors.js";
import { writeFileAtomic } from "../src/checkpoint/atomic.js";
import { CharlmError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";

const tmp = (): string => mkdtempSync(join(tmpdir(), "charlm-ckpt-"));

const sample = () =>
  new Map<string, { shape: number[]; data: Float32Array | Int32Array | Uint8Array | Float64Array }>([
    ["a.weight", { shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-20, -0) }],
    ["b", { shape: [3], data: Int32Array.of(-1, 0, 2147483647) }],
    ["c", { shape: [1], data: Uint8Array.of(7) }],
    ["d", { shape: [2], data: Float64Array.of(Math.PI, -1e300) }],
    ["empty", { shape: [0, 4], data: new Float32Array(0) }],
  ]);

/** Throws a CharlmError whose message matches re (and is one line). */
function refuses(fn: () => unknown, re: RegExp): void {
  assert.throws(
    fn,
    (e: Error) => e instanceof CharlmError && re.test(e.message) && !e.message.includes("\n"),
    String(re),
  );
}

test("safetensors: round trip of every written dtype, metadata, 8-byte aligned data", () => {
  const bytes = encodeSafetensors(sample(), { format: "charlm", note: "ünïcode" });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0);
  const back = decodeSafetensors(bytes, "x.safetensors");
  assert.deepEqual(back.metadata, { format: "charlm", note: "ünïcode" });
  for (const [name, t] of sample()) {
    const got = back.tensors.get(name)!;
    assert.deepEqual(got.shape, t.shape, name);
    assert.deepEqual(Array.from(got.data), Array.from(t.data), name);
    assert.equal(got.data.constructor, t.data.constructor, name);
  }
});

test("safetensors: reads a file laid out by another writer (hand-built header, F16 and BF16, any order)", () => {
  // BF16 0x3fc0 = 1.5; F16 0x3c00 = 1, 0xc000 = -2. Offsets deliberately not in header order.
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [2], data_offsets: [2, 6] },
    b: { dtype: "BF16", shape: [1], data_offsets: [0, 2] },
  });
  const hb = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + hb.length + 6);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(hb.length), true);
  bytes.set(hb, 8);
  const dv = new DataView(bytes.buffer, 8 + hb.length);
  dv.setUint16(0, 0x3fc0, true);
  dv.setUint16(2, 0x3c00, true);
  dv.setUint16(4, 0xc000, true);
  const f = decodeSafetensors(bytes, "other.safetensors");
  assert.deepEqual(Array.from(f.tensors.get("b")!.data), [1.5]);
  assert.deepEqual(Array.from(f.tensors.get("h")!.data), [1, -2]);
});

function withHeader(header: object, dataBytes: number): Uint8Array {
  const hb = new TextEncoder().encode(JSON.stringify(header));
  const bytes = new Uint8Array(8 + hb.length + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(hb.length), true);
  bytes.set(hb, 8);
  return bytes;
}

test("safetensors: damaged files are refused with a message naming the file and the fault", () => {
  const good = encodeSafetensors(sample());
  refuses(() => decodeSafetensors(good.slice(0, 5), "f.st"), /^f\.st: only 5 bytes/);
  refuses(() => decodeSafetensors(good.slice(0, 20), "f.st"), /^f\.st: header says \d+ header bytes .*truncated/);
  refuses(() => decodeSafetensors(good.slice(0, good.length - 3), "f.st"), /truncated/);
  const extra = new Uint8Array(good.length + 4);
  extra.set(good);
  refuses(() => decodeSafetensors(extra, "f.st"), /4 trailing bytes/);
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  refuses(() => decodeSafetensors(huge, "f.st"), /implausibly large/);
  const notJson = good.slice();
  notJson[9] = 0x00;
  refuses(() => decodeSafetensors(notJson, "f.st"), /not valid UTF-8 JSON/);
  const entry = (o: object) => ({ t: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, ...o });
  refuses(
    () => decodeSafetensors(withHeader(entry({ t: { dtype: "Q4", shape: [2], data_offsets: [0, 8] } }), 8), "f"),
    /unsupported dtype "Q4"/,
  );
  refuses(
    () => decodeSafetensors(withHeader(entry({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), 8), "f"),
    /needs 12 bytes but its offsets span 8/,
  );
  refuses(
    () => decodeSafetensors(withHeader(entry({ t: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }), 8), "f"),
    /invalid shape/,
  );
  refuses(
    () => decodeSafetensors(withHeader(entry({ t: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }), 8), "f"),
    /invalid data_offsets/,
  );
  refuses(
    () => decodeSafetensors(withHeader(entry({ u: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }), 8), "f"),
    /overlaps/,
  );
  refuses(
    () => decodeSafetensors(withHeader({ t: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8), "f"),
    /a gap of 4 bytes/,
  );
  refuses(() => decodeSafetensors(withHeader({ __metadata__: { a: 1 } }, 0), "f"), /__metadata__\.a is not a string/);
  refuses(() => decodeSafetensors(withHeader([1, 2], 0), "f"), /does not start with '\{'|not a JSON object/);
});

test("safetensors files: atomic write leaves no temp files; a missing file is a clear error", async () => {
  const dir = tmp();
  const file = join(dir, "w.safetensors");
  await writeSafetensors(file, sample());
  const back = await readSafetensors(file);
  assert.equal(back.tensors.size, 5);
  assert.deepEqual((await import("node:fs")).readdirSync(dir), ["w.safetensors"]);
  await assert.rejects(readSafetensors(join(dir, "nope.safetensors")), /nope\.safetensors: no such file/);
});

test("writeFileAtomic: makes the directory; a write that fails leaves the old file and no temp file", async () => {
  const dir = join(tmp(), "new", "dir");
  const file = join(dir, "a.txt");
  await writeFileAtomic(file, "old\n");
  assert.equal(readFileSync(file, "utf8"), "old\n");
  // data the file handle refuses (as a full disk would fail the write): the temp file goes, the old file stays
  await assert.rejects(writeFileAtomic(file, 42 as unknown as string), /data/);
  assert.deepEqual(readdirSync(dir), ["a.txt"]);
  assert.equal(readFileSync(file, "utf8"), "old\n");
});

// ---------------------------------------------------------------------------------------------------------------
// Checkpoints

const TEXT = "to be, or not to be: that is the question.\n";
const vocab = Vocab.build(TEXT);
const config = {
  type: "rnn" as const,
  cell: "gru" as const,
  vocabSize: vocab.size,
  embedding: 6,
  units: 10,
  layers: 2,
  dropout: 0,
};

async function saved(): Promise<{ dir: string; model: ReturnType<typeof buildModel> }> {
  const dir = join(tmp(), "run");
  const model = buildModel(config, new Rng(3));
  await saveCheckpoint(dir, { model, vocab, step: 7, bestValLoss: 1.25, history: [] });
  return { dir, model };
}

test("checkpoint: save then load gives the same model config, vocabulary and bit-identical weights", async () => {
  const { dir, model } = await saved();
  const { model: back, vocab: v2, manifest } = await loadCheckpoint(dir);
  assert.equal(manifest.format, "charlm-checkpoint");
  assert.equal(manifest.version, 2);
  assert.equal(manifest.tokenizer.kind, "char");
  assert.equal(manifest.step, 7);
  assert.equal(manifest.bestValLoss, 1.25);
  assert.deepEqual(v2.serialize(), vocab.serialize());
  assert.deepEqual(manifest.model, config);
  assert.deepEqual(
    manifest.parameters.map((p) => p.name),
    [...model.parameters().keys()],
  );
  for (const [name, t] of model.parameters()) {
    assert.deepEqual(back.parameters().get(name)!.data, t.data, name);
  }
  // The manifest is readable JSON with short arrays kept on one line.
  const text = readFileSync(join(dir, MANIFEST), "utf8");
  assert.match(text, /"chars": \[/);
  assert.deepEqual(JSON.parse(prettyJson(JSON.parse(text))), JSON.parse(text));
});

test("checkpoint: a directory without a manifest, or no directory, is a clear error", async () => {
  const dir = tmp();
  await assert.rejects(
    loadCheckpoint(dir),
    (e: Error) =>
      e instanceof CharlmError && /no charlm\.json in this directory, so it is not a charlm checkpoint/.test(e.message),
  );
  await assert.rejects(loadCheckpoint(join(dir, "missing")), /no such directory/);
});

test("checkpoint: wrong format name, wrong version, damaged JSON are refused", async () => {
  const { dir } = await saved();
  const file = join(dir, MANIFEST);
  const m = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  writeFileSync(file, JSON.stringify({ ...m, version: 3 }));
  await assert.rejects(
    readManifest(dir),
    /checkpoint format version 3 is not supported \(this charlm reads versions 1 and 2\)/,
  );
  writeFileSync(file, JSON.stringify({ ...m, format: "keras" }));
  await assert.rejects(readManifest(dir), /format is "keras", expected "charlm-checkpoint"/);
  writeFileSync(file, "{ not json");
  await assert.rejects(readManifest(dir), /not valid JSON/);
  writeFileSync(file, JSON.stringify({ ...m, model: { ...(m.model as object), units: "ten" } }));
  await assert.rejects(readManifest(dir), /"units" is "ten"/);
});

test("checkpoint: a version-1 manifest (a character vocabulary, no tokenizer) still loads, as a char tokenizer", async () => {
  const { dir, model } = await saved();
  const file = join(dir, MANIFEST);
  const { tokenizer, ...rest } = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown> & {
    tokenizer: { kind: string; chars: string[]; unk: number };
  };
  const v1 = { ...rest, version: 1, vocab: { chars: tokenizer.chars, unk: tokenizer.unk } };
  writeFileSync(file, JSON.stringify(v1));
  const back = await loadCheckpoint(dir);
  assert.equal(back.manifest.version, 1);
  assert.equal(back.vocab.kind, "char");
  assert.deepEqual(back.vocab.serialize(), vocab.serialize());
  for (const [name, p] of model.parameters()) {
    assert.deepEqual(await back.model.parameters().get(name)!.read(), await p.read(), name);
  }
});

test("checkpoint: every manifest field of the wrong type or range is refused, naming the field", async () => {
  const { dir } = await saved();
  const file = join(dir, MANIFEST);
  const m = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ history: "x" }, /"history" must be a list of epoch records/],
    [
      { history: [{ epoch: 1, step: 2, trainLoss: "a", valLoss: 1, lr: 0.1, seconds: 1 }] },
      /"history\[0\]\.trainLoss"/,
    ],
    [{ bestValLoss: "low" }, /"bestValLoss" must be a number or null, got "low"/],
    [{ optimizer: { type: "adam", t: -1, hyper: {} } }, /"optimizer\.t" must be a whole number of at least 0, got -1/],
    [{ optimizer: { type: "adam", t: 2 } }, /"optimizer\.hyper" must be an object/],
    [{ step: "3" }, /"step" must be a whole number of at least 0, got "3"/],
    [{ epoch: 1.5 }, /"epoch" must be a whole number/],
    [{ stepInEpoch: -2 }, /"stepInEpoch" must be a whole number of at least 0, got -2/],
    [{ rng: { model: [1, 2], data: [1, 2, 3, 4] } }, /"rng\.model" must be four whole numbers/],
    [{ rng: "seeded" }, /"rng" must be an object or null/],
    [{ elapsedSeconds: "long" }, /"elapsedSeconds" must be a number/],
    [{ status: "done" }, /"status" must be one of running, finished, early-stopped, time-limit, stopped, got "done"/],
    [{ earlyStopping: { best: "x", bestEpoch: 1, wait: 0 } }, /"earlyStopping\.best" must be a number or null/],
    [{ partialEpochLoss: { sum: 1, count: -1 } }, /"partialEpochLoss\.count" must be a whole number of at least 0/],
    [{ average: { decay: 1.5, t: 3 } }, /"average\.decay" must be a number between 0 and 1, got 1\.5/],
    [{ average: { decay: 0.99, t: "3" } }, /"average\.t" must be a whole number of at least 0/],
  ];
  for (const [patch, re] of cases) {
    writeFileSync(file, JSON.stringify({ ...m, ...patch }));
    await assert.rejects(
      loadCheckpoint(dir),
      (e: Error) =>
        e instanceof CharlmError && e.message.startsWith(file) && re.test(e.message) && /damaged/.test(e.message),
      JSON.stringify(patch),
    );
  }
});

test("checkpoint: truncated or edited weights are refused, naming the file", async () => {
  const { dir } = await saved();
  const file = join(dir, WEIGHTS);
  const bytes = readFileSync(file);
  writeFileSync(file, bytes.subarray(0, bytes.length - 10));
  await assert.rejects(
    loadCheckpoint(dir),
    (e: Error) => e instanceof CharlmError && e.message.startsWith(file) && /truncated or replaced/.test(e.message),
  );
  const edited = Buffer.from(bytes);
  edited[edited.length - 1] ^= 0x40; // flip a bit of the last weight: structure intact, checksum not
  writeFileSync(file, edited);
  await assert.rejects(loadCheckpoint(dir), /do not match the SHA-256/);
  writeFileSync(file, bytes);
  await loadCheckpoint(dir); // restored: loads again
});

test("checkpoint: weights of another model are refused", async () => {
  const { dir } = await saved();
  const other = join(tmp(), "other");
  const model = buildModel({ ...config, units: 12 }, new Rng(1));
  await saveCheckpoint(other, { model, vocab });
  copyFileSync(join(other, WEIGHTS), join(dir, WEIGHTS));
  // The manifest's size/checksum catches it first ...
  await assert.rejects(loadCheckpoint(dir), /restore the file or train again/);
  // ... and with the manifest patched to match, the shape check does.
  const m = JSON.parse(readFileSync(join(dir, MANIFEST), "utf8")) as { files: Record<string, unknown> };
  const o = JSON.parse(readFileSync(join(other, MANIFEST), "utf8")) as { files: Record<string, unknown> };
  m.files[WEIGHTS] = o.files[WEIGHTS];
  writeFileSync(join(dir, MANIFEST), JSON.stringify(m));
  await assert.rejects(
    loadCheckpoint(dir),
    /has shape \[6,36\] but the model needs \[6,30\]; the weights belong to another model/,
  );
});

test("checkpoint: an interrupted save leaves a loadable checkpoint (old before the commit, new after)", async () => {
  const { dir, model } = await saved();
  const before = Array.from(model.parameters().values())[0].data.slice();
  // Simulate a crash after the new data files were written but before the commit: stray .next files.
  writeFileSync(join(dir, WEIGHTS + ".next"), "garbage");
  let loaded = await loadCheckpoint(dir);
  assert.deepEqual(Array.from(loaded.model.parameters().values())[0].data, before);
  // Simulate a crash after the commit point: the new manifest and files exist as .next; the reader finishes.
  for (const p of model.parameters().values()) p.data.fill(0.5);
  const staging = join(tmp(), "staging");
  await saveCheckpoint(staging, { model, vocab, step: 99 });
  copyFileSync(join(staging, WEIGHTS), join(dir, WEIGHTS + ".next"));
  copyFileSync(join(staging, MANIFEST), join(dir, MANIFEST + ".next"));
  const files = listing(dir);
  loaded = await loadCheckpoint(dir);
  assert.equal(loaded.manifest.step, 99);
  assert.equal(Array.from(loaded.model.parameters().values())[0].data[0], 0.5);
  // The reader took the committed save as it stands and changed nothing; the next writer finishes it.
  assert.deepEqual(listing(dir), files);
  (await openForWriting(dir)).release();
  assert.ok(!existsSync(join(dir, MANIFEST + ".next")));
  assert.ok(!existsSync(join(dir, WEIGHTS + ".next")));
  assert.equal((await loadCheckpoint(dir)).manifest.step, 99);
  renameSync(join(dir, WEIGHTS), join(dir, "moved"));
  await assert.rejects(loadCheckpoint(dir), /model\.safetensors: missing, though charlm\.json lists it/);
});

/** Every file of a directory with its bytes, to show that a reader changed nothing. */
function listing(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f)).toString("base64")]));
}

test("checkpoint: a reader never repairs, renames or deletes, even when charlm.json.next is not a manifest", async () => {
  const { dir, model } = await saved();
  writeFileSync(join(dir, MANIFEST + ".next"), "{}\n");
  writeFileSync(join(dir, WEIGHTS + ".next"), "half a save");
  const files = listing(dir);
  const loaded = await loadCheckpoint(dir);
  assert.equal(loaded.manifest.step, 7);
  for (const [name, t] of model.parameters()) assert.deepEqual(loaded.model.parameters().get(name)!.data, t.data);
  await readManifest(dir);
  assert.deepEqual(listing(dir), files);
  // The writer does not trust it either: it refuses to act on a foreign file rather than delete the weights.
  await assert.rejects(openForWriting(dir), /charlm\.json\.next: not a charlm manifest; .*remove it/);
  assert.deepEqual(listing(dir), files);
});

test("checkpoint: the next writer removes the temp files and uncommitted .next files of a killed write", async () => {
  const { dir } = await saved();
  const files = listing(dir);
  writeFileSync(join(dir, `.${WEIGHTS}.next.tmp-999999-0`), "killed mid-write");
  writeFileSync(join(dir, `.${MANIFEST}.next.tmp-999999-3`), "{");
  writeFileSync(join(dir, WEIGHTS + ".next"), "written, never committed");
  const lock = await openForWriting(dir);
  lock.release();
  assert.deepEqual(listing(dir), files);
});

test("checkpoint: one writer at a time; a lock left by a dead process is taken over", async () => {
  const { dir } = await saved();
  const lock = await openForWriting(dir);
  // Re-entrant within one process (the train command and the loop both take it) ...
  (await openForWriting(dir)).release();
  // ... but another live process holding it is refused, naming it.
  const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" });
  try {
    lock.release();
    assert.ok(!existsSync(join(dir, LOCK)));
    writeFileSync(join(dir, LOCK), JSON.stringify({ pid: other.pid }));
    await assert.rejects(
      openForWriting(dir),
      (e: Error) =>
        e instanceof CharlmError &&
        new RegExp(`is being written by another charlm process \\(pid ${other.pid}\\); wait for it`).test(e.message),
    );
  } finally {
    other.kill();
    await new Promise((resolve) => other.once("exit", resolve));
  }
  // The holder died without releasing it: the next writer takes over.
  const next = await openForWriting(dir);
  assert.equal((JSON.parse(readFileSync(join(dir, LOCK), "utf8")) as { pid: number }).pid, process.pid);
  next.release();
});

test("checkpoint: a damaged file is refused at once, even while this process holds the writer lock", async () => {
  const { dir } = await saved();
  const lock = await openForWriting(dir); // as a trainer does before reading the run it resumes
  try {
    const file = join(dir, WEIGHTS);
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] ^= 0x40;
    writeFileSync(file, bytes);
    const t0 = performance.now();
    await assert.rejects(loadCheckpoint(dir), /do not match the SHA-256/);
    assert.ok(performance.now() - t0 < 1000, "no waiting for a writer that is this process");
  } finally {
    lock.release();
  }
});
