// The one chart module: round tick values, the loss chart's two lines, and text that cannot break the SVG.

import { test } from "node:test";
import assert from "node:assert/strict";
import { lineChartSvg, lossChartSvg, niceTicks } from "../src/util/chart.js";

test("niceTicks: round values 1, 2 or 5 times a power of ten apart, inside the range", () => {
  assert.deepEqual(niceTicks(1.53, 4.17), [2, 3, 4]);
  assert.deepEqual(niceTicks(1.2, 3.4), [1.5, 2, 2.5, 3]);
  assert.deepEqual(niceTicks(0, 1000), [0, 200, 400, 600, 800, 1000]);
  assert.deepEqual(niceTicks(1.5401, 1.5423), [1.5405, 1.541, 1.5415, 1.542]);
});

test("the loss chart: one line and one point per epoch for each split; NaN and missing values are left out", () => {
  const svg = lossChartSvg(
    [
      { step: 310, trainLoss: 2.1, valLoss: 1.9 },
      { step: 620, trainLoss: NaN, valLoss: 1.7 },
      { step: 930, valLoss: 1.6 },
    ],
    "run <a> & b",
    "char",
  );
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^]*<\/svg>$/);
  assert.equal((svg.match(/stroke-width="1.5"/g) ?? []).length, 2);
  assert.equal((svg.match(/<circle /g) ?? []).length, 1 + 3);
  assert.match(svg, />run &lt;a> &amp; b: loss \(nats\/char\)</);
  assert.match(svg, />step</);
  assert.match(svg, />loss \(nats\/char\)</);
  assert.match(lineChartSvg([], { title: "t", xLabel: "x", yLabel: "y" }), />no data yet</);
});

test("a word or bpe model's loss chart says nats/token, what its losses are per", () => {
  for (const kind of ["word", "bpe"]) {
    const svg = lossChartSvg([{ step: 10, trainLoss: 5.2, valLoss: 5.4 }], "words", kind);
    assert.match(svg, />words: loss \(nats\/token\)</);
    assert.match(svg, />loss \(nats\/token\)</);
    assert.doesNotMatch(svg, /nats\/char/);
  }
});
