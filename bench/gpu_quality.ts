// The `gpu` preset's quality on Tiny Shakespeare within a time budget: the best TFDS validation loss it reaches in
// --seconds of training (default 300) on the chosen backend, and the test loss of those best weights.
//
//   node --import tsx bench/gpu_quality.ts [--seconds S] [--backend webgpu|wasm|js] [--eval-every STEPS]
//     [--preset NAME] [--set KEY=VALUE,...]     (another preset, or config fields over it: --set dropout=0.4)
//     [--averages 0.995,0.998]  (also evaluate weight averages of these decays beside the preset's own weights)
//   A recipe with `ema` (--set ema=0.998) is judged by its weight average, as charlm train judges it.
//   (bundled for the GPU machine: bash ../shared/gpu/pack.sh bench/gpu_quality.ts; see bench/gpu.ts)
//
// The recipe is the preset's (src/train/config.ts, PRESETS.gpu): model, batch, sequence, Adam, warm-up, clipping,
// dropout, early-stopping patience. The cosine schedule runs over the preset's epochs (of stepsPerEpoch, or a whole
// pass), or over the steps the budget allows where that is fewer (the speed measured from step 10 to 40). Every
// --eval-every steps (default: an epoch) the whole validation split is evaluated; the best weights are kept on the
// host and put back for the test loss. Times count training and evaluation, not start-up.

import { loadTinyShakespeare } from "../src/data/tinyshakespeare.js";
import { WindowEpoch } from "../src/data/batching.js";
import { useBackend, type BackendName } from "../src/engine/index.js";
import { scope } from "../src/engine/scope.js";
import { buildModel, countParams } from "../src/models/registry.js";
import { buildTrainVocab, modelConfigFor, resolveTrainConfig, type TrainConfig } from "../src/train/config.js";
import { evaluate } from "../src/train/evaluate.js";
import { WeightAverage } from "../src/train/average.js";
import { dataRngFor, modelRngFor } from "../src/train/loop.js";
import { clipGradNorm, createOptimizer } from "../src/train/optimizers.js";
import { learningRate } from "../src/train/schedules.js";
import { Rng } from "../src/util/rng.js";

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** --set dropout=0.4,units=1024: config fields over the preset's (checked like flags); numbers and booleans parsed. */
function settings(spec: string | undefined): Partial<TrainConfig> {
  const out: Record<string, unknown> = {};
  for (const item of spec ? spec.split(",") : []) {
    const [k, v] = item.split("=");
    if (v === undefined) throw new Error(`--set: '${item}' is not KEY=VALUE (e.g. --set dropout=0.4,units=1024)`);
    out[k] = v === "true" ? true : v === "false" ? false : v !== "" && Number.isFinite(Number(v)) ? Number(v) : v;
  }
  return out as Partial<TrainConfig>;
}

async function main(): Promise<void> {
  const seconds = Number(option("--seconds") ?? 300);
  const preset = option("--preset") ?? "gpu";
  const cfg = resolveTrainConfig({ preset, overrides: settings(option("--set")) });
  const backend = (option("--backend") ?? cfg.backend) as BackendName;
  const be = await useBackend(backend);
  const ts = await loadTinyShakespeare({ quiet: true });
  const vocab = buildTrainVocab(cfg, ts.train);
  const [trainIds, valIds, testIds] = [ts.train, ts.validation, ts.test].map((t) => vocab.encode(t));
  // the model, optimizer and random streams as charlm train makes them (loop.ts)
  const model = buildModel(modelConfigFor(cfg, vocab.size), new Rng(cfg.seed), cfg.init);
  const params = model.parameters();
  const opt = createOptimizer(cfg.optimizer, params, {
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    momentum: cfg.momentum,
    weightDecay: cfg.weightDecay,
  });
  const [B, T] = [cfg.batchSize, cfg.seqLength];
  const dataRng = dataRngFor(cfg.seed);
  const modelRng = modelRngFor(cfg.seed);
  const windows = new WindowEpoch(trainIds, B, T, dataRng);
  // an epoch: the preset's stepsPerEpoch, or (0) a whole pass over the training split, as in charlm train
  const perEpoch = cfg.stepsPerEpoch > 0 ? cfg.stepsPerEpoch : windows.batchesPerEpoch;
  const evalEvery = Number(option("--eval-every") ?? perEpoch);
  const shape =
    cfg.type === "gpt"
      ? `GPT ${cfg.layers} x ${cfg.embedding}, ${cfg.heads} heads`
      : `${cfg.layers} x ${cfg.cell.toUpperCase()} ${cfg.units}`;
  console.log(
    `${preset} preset${option("--set") ? ` with ${option("--set")}` : ""} on ${be.name}: ` +
      `${countParams(model).toLocaleString("en-US")} parameters, ${shape}, dropout ${cfg.dropout}, ` +
      `batch ${B} x ${T}, lr ${cfg.lr}, budget ${seconds} s`,
  );

  // The recipe's weights (its average with `ema`), and a weight average for each --averages decay
  // (src/train/average.ts), each with its best validation loss; early stopping waits on the best of them.
  const decays = (option("--averages") ?? "").split(",").filter(Boolean).map(Number);
  if (cfg.ema > 0) decays.unshift(cfg.ema);
  type Best = { val: number; step: number; time: number; weights: Map<string, Float32Array> | null };
  const variants = [...(cfg.ema > 0 ? [] : [null]), ...decays].map((d) => ({
    name: d === null ? "weights" : `average ${d}`,
    avg: d === null ? null : new WeightAverage(params, d),
    best: { val: Infinity, step: 0, time: 0, weights: null } as Best,
  }));
  let totalSteps = 1e9; // until the speed is known
  let step = 0;
  let t10 = 0;
  let sinceBest = 0; // evaluations without a new best, for the preset's early-stopping patience
  const t0 = performance.now();
  const elapsed = (): number => (performance.now() - t0) / 1000;
  /** Evaluate every variant; true if any reached its best. */
  const evaluateAll = async (): Promise<boolean> => {
    let anyBest = false;
    const parts: string[] = [];
    for (const v of variants) {
      const run = async () => {
        const val = await evaluate(model, valIds, { B, T, maxChars: 0 });
        if (val.nats < v.best.val) {
          const weights = new Map<string, Float32Array>();
          for (const [k, p] of params) weights.set(k, await p.read());
          v.best = { val: val.nats, step, time: elapsed(), weights };
          return `${val.nats.toFixed(4)}*`;
        }
        return val.nats.toFixed(4);
      };
      const shown = v.avg ? await v.avg.with(run) : await run();
      if (shown.endsWith("*")) anyBest = true;
      parts.push(variants.length > 1 ? `${v.name} ${shown}` : shown);
    }
    console.log(`  step ${step}  ${elapsed().toFixed(0)} s  validation ${parts.join(", ")}`);
    return anyBest;
  };
  let batches = windows.batches();
  outer: for (;;) {
    for (let k = 0; k < evalEvery; k++) {
      let next = batches.next();
      if (next.done) {
        batches = windows.batches();
        next = batches.next();
      }
      const batch = next.value!;
      const lr = learningRate(step, { ...cfg, totalSteps });
      const loss = scope(() => {
        for (const p of params.values()) p.zeroGrad();
        const opts = { targets: batch.targets, training: true, rng: modelRng }; // the loop's options (rng: dropout)
        const res = model.forward(batch.inputs, B, T, opts);
        res.loss!.backward();
        clipGradNorm(params.values(), cfg.clip);
        opt.step(lr);
        return res.loss!;
      });
      for (const v of variants) v.avg?.update();
      step++;
      // The speed from steps 10 to 40, after the kernels' first compilations: the cosine is stretched over what the
      // budget allows, but never past the preset's own epochs x stepsPerEpoch (a fast GPU would otherwise keep the
      // learning rate high for dozens of passes over this small corpus and only overfit).
      if (step === 10 || step === 40) {
        const v = await loss.value(); // waits for the queue: the time is the real speed
        if (step === 10) t10 = elapsed();
        else {
          const rate = 30 / (elapsed() - t10);
          const byBudget = Math.floor(step + rate * (seconds - elapsed()) * 0.93); // evaluations take the rest
          totalSteps = Math.min(byBudget, cfg.epochs * perEpoch);
          console.log(
            `  ${rate.toFixed(1)} steps/s (${((rate * B * T) / 1000).toFixed(0)} k chars/s), loss ${v.toFixed(3)}; ` +
              `cosine over ${totalSteps} steps (${byBudget} fit the budget, the preset's schedule is ` +
              `${cfg.epochs * perEpoch})`,
          );
        }
      }
      loss.dispose();
      if (step >= totalSteps || elapsed() > seconds) break outer;
    }
    sinceBest = (await evaluateAll()) ? 0 : sinceBest + 1;
    if (cfg.patience > 0 && sinceBest >= cfg.patience) {
      console.log(`  early stop: no better validation in ${cfg.patience} evaluations`);
      break;
    }
  }
  await evaluateAll();
  const trained = elapsed();
  for (const v of variants) {
    for (const [k, p] of params) p.write(v.best.weights!.get(k)!);
    const test = await evaluate(model, testIds, { B, T, maxChars: 0 });
    console.log(
      `${variants.length > 1 ? `${v.name}: ` : ""}best validation ${v.best.val.toFixed(4)} nats/char at step ` +
        `${v.best.step} (${v.best.time.toFixed(0)} s of ${trained.toFixed(0)} s); ` +
        `test ${test.nats.toFixed(4)} nats/char (${test.bits.toFixed(3)} bits/char)`,
    );
  }
}

await main();
process.exit(0);
