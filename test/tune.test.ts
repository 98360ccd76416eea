// charlm tune with the tiny preset: the space syntax and its one-line errors, a random search whose trials are
// normal runs, successive halving that promotes the best trials by resuming them, a search killed mid-trial that
// resumes, and --apply's config that `charlm train --config` takes. Every trial is a real `charlm train` process.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readManifest } from "../src/checkpoint/checkpoint.js";
import { parseDuration } from "../src/cli/commands/tune.js";
import { formatTable, parseSpaceArg, parseSpaceJson, sample, tune } from "../src/tune/index.js";
import { defineSearch, type SearchState } from "../src/tune/search.js";
import { Rng } from "../src/util/rng.js";
import { cli } from "./helpers/cli.js";

const root = mkdtempSync(join(tmpdir(), "charlm-tune-"));
const corpus = join(root, "corpus.txt");
writeFileSync(
  corpus,
  "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n".repeat(150) +
    "MENENIUS:\nWhy, masters, my good friends, mine honest neighbours, will you undo yourselves?\n".repeat(50),
);
// Settings every trial shares: the tiny preset, short epochs, a small validation sample.
const fixed = { data: corpus, stepsPerEpoch: 6, evalChars: 600 };
const state = (dir: string): SearchState => JSON.parse(readFileSync(join(dir, "tune.json"), "utf8")) as SearchState;

test("space specs: log ranges, ranges, choices and JSON; draws are seeded and stay inside", () => {
  assert.deepEqual(parseSpaceArg("lr=log:1e-4:1e-2"), {
    key: "lr",
    kind: "range",
    lo: 1e-4,
    hi: 1e-2,
    log: true,
    int: false,
  });
  assert.deepEqual(parseSpaceArg("seq-length=50:200"), {
    key: "seqLength",
    kind: "range",
    lo: 50,
    hi: 200,
    log: false,
    int: true,
  });
  assert.deepEqual(parseSpaceArg("init=keras,torch"), { key: "init", kind: "choice", values: ["keras", "torch"] });
  assert.deepEqual(parseSpaceArg("restoreBest=true,false"), {
    key: "restoreBest",
    kind: "choice",
    values: [true, false],
  });
  const json = parseSpaceJson({ units: [128, 256], dropout: { min: 0, max: 0.5 }, lr: "log:1e-4:1e-2" }, "space.json");
  assert.deepEqual(
    json.map((d) => d.key),
    ["units", "dropout", "lr"],
  );
  const space = [parseSpaceArg("lr=log:1e-4:1e-2"), parseSpaceArg("units=64:512"), parseSpaceArg("cell=lstm,gru")];
  const rng = new Rng(7);
  const draws = Array.from({ length: 400 }, () => sample(space, rng));
  assert.ok(
    draws.every(
      (d) => d.lr! >= 1e-4 && d.lr! <= 1e-2 && Number.isInteger(d.units) && d.units! >= 64 && d.units! <= 512,
    ),
  );
  // Log-uniform: about half the draws below the geometric middle, 1e-3.
  const low = draws.filter((d) => d.lr! < 1e-3).length;
  assert.ok(low > 160 && low < 240, `${low} of 400 below 1e-3`);
  assert.deepEqual(new Set(draws.map((d) => d.cell)), new Set(["lstm", "gru"]));
  const again = new Rng(7);
  assert.deepEqual(sample(space, again), draws[0]);
  assert.equal(parseDuration("1h30m"), 5400);
  assert.equal(parseDuration("90s"), 90);
  assert.equal(parseDuration("45"), 45);
  // Halving with --time: rungs b, 3b, 9b with b fitted to 80% of the time on the jobs' cores.
  const d = defineSearch({
    out: "x",
    space: ["lr=log:1e-4:1e-2"],
    strategy: "halving",
    trials: 9,
    timeSeconds: 600,
    jobs: 2,
  });
  assert.equal(d.budgets!.length, 3);
  assert.ok(Math.abs(d.budgets![0] - (0.8 * 600 * 2) / (9 * (1 + 2 * (2 / 3)))) < 0.1, `${d.budgets}`);
});

test("a bad space spec is one line naming it and the fix, before anything is written", async () => {
  const cases: [string[], RegExp][] = [
    [["--space", "unitz=1,2"], /--space unitz=1,2: "unitz" is not a training config field; use one of data, .*units/],
    [["--space", "lr=0:1"], /--space lr=0:1: "lr" must be above 0, got 0/],
    [["--space", "dropout=0.5:0.1"], /lower bound 0\.5 must be below the upper bound 0\.1/],
    [["--space", "lr=log:0:1"], /a log range needs bounds above 0/],
    [["--space", "cell=lstm,transformer"], /"cell" must be one of lstm, gru, rnn, got "transformer"/],
    [["--space", "units=abc"], /'abc' is not a number/],
    [["--space", "batching=0:1"], /batching is not a number field; list its values/],
    [["--space", "units"], /write key=spec/],
    [["--space", "units=8,16", "--space", "units=32"], /gives units twice/],
    [["--space", "units=8", "--time", "soon"], /--time soon: write a duration like 90s/],
  ];
  for (const [args, want] of cases) {
    const out = join(root, "bad");
    const r = await cli("tune", "--out", out, "--preset", "tiny", ...args);
    assert.notEqual(r.code, 0, args.join(" "));
    assert.match(r.err, want, args.join(" "));
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
    assert.ok(!existsSync(out), `${args.join(" ")} created ${out}`);
  }
  const help = await cli("tune", "--help");
  assert.match(help.out, /--space KEY=SPEC/);
  assert.match(help.out, /--strategy STRING .*\(random\|halving\)/);
  assert.match(help.out, /--time-limit SECONDS/); // training flags pass through
});

test("random search: 4 trials in parallel, each a normal run; results sorted; --apply feeds charlm train --config", async () => {
  const out = join(root, "random");
  const apply = join(root, "best.json");
  const lines: string[] = [];
  const r = await tune({
    out,
    preset: "tiny",
    fixed,
    space: ["lr=log:1e-3:3e-2", "units=16,32", "init=keras,torch"],
    trials: 4,
    jobs: 4,
    apply,
    log: (l) => lines.push(l),
  });
  assert.equal(r.status, "finished");
  assert.equal(r.rows.length, 4);
  const losses = r.rows.map((row) => row.bestValLoss!);
  assert.ok(
    losses.every((v) => v > 0 && v < 5),
    `${losses}`,
  );
  assert.deepEqual(
    losses,
    [...losses].sort((a, b) => a - b),
  );
  assert.equal(lines.filter((l) => / trial 00\d starts: lr=/.test(l)).length, 4);
  assert.equal(lines.filter((l) => / trial 00\d finished: val \d\.\d{4} after /.test(l)).length, 4);
  for (const row of r.rows) {
    const m = await readManifest(join(out, row.dir));
    assert.equal(m.status, "finished");
    assert.equal(m.train!.lr, row.settings.lr);
    assert.ok(row.charsPerSec! > 0 && row.seconds > 0);
  }
  const table = formatTable(r.rows);
  assert.match(table.split("\n")[0], /^#\s+trial\s+lr\s+units\s+init\s+val loss\s+time \(s\)\s+steps\s+chars\/s/);
  assert.match(readFileSync(join(out, "results.md"), "utf8"), /\| 1 \| \d{3} \| /);
  const csv = readFileSync(join(out, "results.csv"), "utf8").trim().split("\n");
  assert.equal(csv.length, 5);
  assert.match(csv[0], /^rank,trial,lr,units,init,best_val_loss,/);
  assert.equal(JSON.parse(readFileSync(join(out, "results.json"), "utf8")).length, 4);
  const svg = readFileSync(join(out, "val-loss.svg"), "utf8");
  assert.equal(svg.match(/stroke-width="1\.5"/g)?.length, 4); // one line per trial
  // A trial is a run like any other: it samples.
  const s = await cli("sample", "--model", join(out, r.rows[0].dir), "--length", "20", "--seed", "1");
  assert.equal(s.code, 0, s.err);
  // --apply: the best trial's full config, which charlm train takes as it is.
  const best = JSON.parse(readFileSync(apply, "utf8")) as Record<string, unknown>;
  assert.equal(best.lr, r.rows[0].settings.lr);
  assert.equal(best.init, r.rows[0].settings.init);
  const again = join(root, "from-best");
  const t = await cli("train", "--config", apply, "--out", again, "--epochs", "1", "--steps-per-epoch", "2", "--quiet");
  assert.equal(t.code, 0, t.err);
  const m = await readManifest(again);
  assert.equal(m.train!.lr, best.lr);
  assert.equal(m.train!.units, best.units);
});

test("successive halving: the best half of each rung resumes with twice the epochs", async () => {
  const out = join(root, "halving");
  const lines: string[] = [];
  const r = await tune({
    out,
    preset: "tiny",
    fixed,
    space: ["lr=log:1e-3:5e-2", "units=8,32"],
    strategy: "halving",
    budget: "epochs",
    trialBudget: 1,
    eta: 2,
    rungs: 2,
    trials: 4,
    jobs: 4,
    log: (l) => lines.push(l),
  });
  assert.deepEqual(r.state.definition.budgets, [1, 2]);
  const byRung = [0, 1].map((k) => r.state.trials.filter((t) => t.rung === k).map((t) => t.id));
  assert.deepEqual(
    byRung.map((ids) => ids.length),
    [2, 2],
  );
  // Each trial trained exactly its last rung's epochs, promoted ones by resuming their own run.
  for (const t of r.state.trials) {
    const m = await readManifest(join(out, "trials", t.id));
    assert.equal(m.epoch, [1, 2][t.rung], t.id);
    const log = readFileSync(join(out, "trials", `${t.id}.log`), "utf8");
    assert.equal((log.match(/--resume/g) ?? []).length, t.rung, t.id);
  }
  // The promoted were the best after one epoch.
  const firstVal = (id: string) => r.state.trials.find((t) => t.id === id)!.outcome!.curve[0][1];
  const promoted = r.state.trials.filter((t) => t.rung > 0).map((t) => firstVal(t.id));
  const dropped = r.state.trials.filter((t) => t.rung === 0).map((t) => firstVal(t.id));
  assert.ok(Math.max(...promoted) <= Math.min(...dropped), `promoted ${promoted}, dropped ${dropped}`);
  assert.ok(
    lines.some((l) => /rung 1 ended: \d{3}, \d{3} promoted to rung 2 \(budget 2 epoch\(s\)\) of 4/.test(l)),
    lines.join("\n"),
  );
  assert.equal(r.rows[0].rung, 2); // the winner went the distance
});

test("a search killed mid-trial resumes: an ended trial stays, the interrupted one continues", async () => {
  const out = join(root, "killed");
  const args = [
    "tune",
    "--out",
    out,
    "--preset",
    "tiny",
    "--data",
    corpus,
    "--steps-per-epoch",
    "6",
    "--eval-chars",
    "600",
  ];
  args.push("--space", "lr=log:1e-3:3e-2", "--trials", "2", "--jobs", "1");
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { stdio: "ignore" });
  // Kill it (SIGKILL: no chance to clean up) once the second trial has started.
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      try {
        const s = state(out);
        if (s.trials[1]?.state === "running" && s.trials[1].pid) {
          clearInterval(poll);
          child.removeAllListeners("exit");
          child.on("exit", () => resolve());
          child.kill("SIGKILL");
        }
      } catch {
        /* not written yet */
      }
    }, 20);
    child.on("exit", () => {
      clearInterval(poll);
      reject(new Error("the search ended before it could be killed"));
    });
  });
  const before = state(out);
  assert.equal(before.trials[0].state, "done");
  assert.equal(before.trials.length, 2);
  const lines: string[] = [];
  const r = await tune({ out, log: (l) => lines.push(l) }); // no space: continue the search as it was defined
  assert.equal(r.status, "finished");
  assert.match(lines[0], /continuing the search in .*: 1 of 2 trial\(s\) ended before/);
  assert.deepEqual(
    r.state.trials.map((t) => t.state),
    ["done", "done"],
  );
  assert.deepEqual(
    r.state.trials.map((t) => t.settings),
    before.trials.map((t) => t.settings),
  );
  const runs = (id: string) =>
    (readFileSync(join(out, "trials", `${id}.log`), "utf8").match(/^\$ charlm train/gm) ?? []).length;
  assert.deepEqual([runs("001"), runs("002")], [1, 2]);
  for (const t of r.state.trials) assert.equal((await readManifest(join(out, "trials", t.id))).status, "finished");
  // The same search with another space is refused with one line.
  await assert.rejects(
    () => tune({ out, preset: "tiny", fixed, space: ["lr=0.1:0.2"] }),
    /holds a search with other settings .* pick another --out/,
  );
});
