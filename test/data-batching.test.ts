import { test } from "node:test";
import assert from "node:assert/strict";
import { randomWindows, StreamBatcher, WindowEpoch } from "../src/data/batching.js";
import { Rng } from "../src/util/rng.js";

const ids = Int32Array.from({ length: 103 }, (_, i) => i);

/** targets[b, t] must be the id after inputs[b, t], and inputs must be a contiguous run. */
function checkShifted(inputs: Int32Array, targets: Int32Array, B: number, T: number): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      assert.equal(targets[b * T + t], inputs[b * T + t] + 1);
      if (t > 0) assert.equal(inputs[b * T + t], inputs[b * T + t - 1] + 1);
    }
  }
}

test("randomWindows: (B, T) windows, targets shifted by one, seeded", () => {
  const a = randomWindows(ids, 4, 10, new Rng(1));
  assert.equal(a.inputs.length, 40);
  checkShifted(a.inputs, a.targets, 4, 10);
  for (const x of a.targets) assert.ok(x < 103);
  assert.deepEqual(randomWindows(ids, 4, 10, new Rng(1)), a);
  assert.notDeepEqual(randomWindows(ids, 4, 10, new Rng(2)).inputs, a.inputs);
  // A window needs T + 1 characters: exactly enough works, one fewer does not.
  const exact = randomWindows(ids.subarray(0, 11), 2, 10, new Rng(0));
  assert.deepEqual(Array.from(exact.inputs.subarray(0, 10)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.throws(
    () => randomWindows(ids.subarray(0, 10), 1, 10, new Rng(0)),
    /10 tokens \(characters, for a char model\), fewer than the 11/,
  );
});

test("zero or negative sizes are errors", () => {
  const rng = new Rng(0);
  assert.throws(() => randomWindows(ids, 0, 5, rng), /batch size must be a whole number of at least 1, got 0/);
  assert.throws(() => randomWindows(ids, 2, -3, rng), /sequence length must be .* got -3/);
  assert.throws(() => new WindowEpoch(ids, 2, 0, rng), /sequence length/);
  assert.throws(() => new StreamBatcher(ids, -1, 5), /batch size/);
  assert.throws(() => new StreamBatcher(ids, 2, 1.5), /sequence length/);
});

test("WindowEpoch: non-overlapping T+1 chunks, each used once per epoch, remainder dropped, shuffled per epoch", () => {
  const we = new WindowEpoch(ids, 3, 9, new Rng(5)); // 103 / 10 = 10 chunks -> 3 batches of 3, one chunk dropped
  assert.equal(we.chunks, 10);
  assert.equal(we.batchesPerEpoch, 3);
  const epoch1 = [...we];
  assert.equal(epoch1.length, 3);
  const starts = new Set<number>();
  for (const b of epoch1) {
    checkShifted(b.inputs, b.targets, 3, 9);
    for (let r = 0; r < 3; r++) {
      assert.equal(b.inputs[r * 9] % 10, 0); // chunk starts are multiples of T+1
      starts.add(b.inputs[r * 9]);
    }
  }
  assert.equal(starts.size, 9);
  const epoch2 = [...we.batches()];
  assert.notDeepEqual(
    epoch2.map((b) => b.inputs[0]),
    epoch1.map((b) => b.inputs[0]),
  );
  assert.throws(() => new WindowEpoch(ids, 20, 9, new Rng(0)), /fewer than the 200 needed for one batch/);
});

test("StreamBatcher: B contiguous streams continue across batches; reset at start and at wrap-around", () => {
  const sb = new StreamBatcher(ids, 2, 10); // span = floor(102 / 2) = 51 -> 5 batches per epoch
  assert.equal(sb.span, 51);
  assert.equal(sb.batchesPerEpoch, 5);
  const seen: { first: number[]; reset: boolean }[] = [];
  for (let k = 0; k < 7; k++) {
    const b = sb.next();
    checkShifted(b.inputs, b.targets, 2, 10);
    seen.push({ first: [b.inputs[0], b.inputs[10]], reset: b.reset });
  }
  assert.deepEqual(
    seen.map((s) => s.first),
    [
      [0, 51],
      [10, 61],
      [20, 71],
      [30, 81],
      [40, 91],
      [0, 51],
      [10, 61],
    ],
  );
  assert.deepEqual(
    seen.map((s) => s.reset),
    [true, false, false, false, false, true, false],
  );
  assert.equal(sb.epochs, 1);
  assert.throws(() => new StreamBatcher(ids.subarray(0, 20), 2, 10), /fewer than the 21 needed/);
});

test("StreamBatcher state resumes exactly and refuses a different shape", () => {
  const a = new StreamBatcher(ids, 3, 7);
  for (let k = 0; k < 4; k++) a.next();
  const state = a.getState();
  const b = new StreamBatcher(ids, 3, 7);
  b.setState(JSON.parse(JSON.stringify(state)));
  for (let k = 0; k < 6; k++) assert.deepEqual(b.next(), a.next());
  assert.throws(() => new StreamBatcher(ids, 3, 8).setState(state), /cannot resume batching/);
  assert.throws(() => new StreamBatcher(ids, 3, 7).setState({ ...state, pos: 999 }), /out of range/);
});
