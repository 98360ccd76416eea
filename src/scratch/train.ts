// The min-char-rnn training loop: walk through the data in chunks of seqLength characters, carrying the hidden
// state from one chunk to the next; back to the start (with a zero hidden state) when the next chunk would run off
// the end. One Adagrad update per chunk; a smoothed loss and a 200-character sample every so often.

import type { Rng } from "../util/rng.js";
import { ScratchRNN } from "./rnn.js";

export interface ScratchConfig {
  /** Size of the hidden layer (min-char-rnn: 100). */
  hidden: number;
  /** Characters unrolled per update (min-char-rnn: 25). */
  seqLength: number;
  /** Adagrad learning rate (min-char-rnn: 0.1). */
  learningRate: number;
  /** Element-wise gradient clip (min-char-rnn: 5). */
  clip: number;
}

export const DEFAULT_SCRATCH_CONFIG: ScratchConfig = { hidden: 100, seqLength: 25, learningRate: 0.1, clip: 5 };

/** Everything that changes while training, beside the weights; saved in checkpoints so a run can resume exactly. */
export interface TrainerState {
  /** Updates done so far ("n" in min-char-rnn). */
  iteration: number;
  /** Completed passes over the data. */
  epoch: number;
  /** Index in the data where the next chunk starts ("p"). */
  position: number;
  /** Hidden state carried into the next chunk. */
  hprev: Float64Array;
  /** 0.999 * smooth + 0.001 * loss, with loss summed over the chunk; starts at -log(1/V) * seqLength. */
  smoothLoss: number;
}

export class ScratchTrainer {
  readonly state: TrainerState;

  constructor(
    readonly model: ScratchRNN,
    readonly ids: Int32Array,
    readonly config: ScratchConfig,
    state?: TrainerState,
  ) {
    this.state = state ?? {
      iteration: 0,
      epoch: 0,
      position: 0,
      hprev: new Float64Array(model.H),
      smoothLoss: -Math.log(1 / model.V) * config.seqLength,
    };
  }

  /**
   * Does the next chunk fit? min-char-rnn tests `p + seq_length + 1 >= len(data)`, which skips a final chunk that
   * fits exactly; we use `>` so that a text of exactly seqLength + 1 characters (or "hello world" in two chunks of
   * 5) is trained on whole. On a long corpus the difference is at most one chunk per pass.
   */
  private atEnd(): boolean {
    return this.state.position + this.config.seqLength + 1 > this.ids.length;
  }

  /** Passes over the data finished, counting one that has just ended. */
  epochsDone(): number {
    return this.state.epoch + (this.atEnd() ? 1 : 0);
  }

  /** Updates per pass over the data. */
  get iterationsPerEpoch(): number {
    return Math.floor((this.ids.length - 1) / this.config.seqLength);
  }

  /** One update on the next chunk; returns its summed loss. */
  step(): number {
    const s = this.state;
    const T = this.config.seqLength;
    if (this.atEnd()) {
      s.position = 0;
      s.epoch++;
      s.hprev = new Float64Array(this.model.H); // reset the memory at the start of the data
    }
    const inputs = this.ids.subarray(s.position, s.position + T);
    const targets = this.ids.subarray(s.position + 1, s.position + T + 1);
    const { loss, h } = this.model.lossFun(inputs, targets, s.hprev, this.config.clip);
    this.model.adagrad(this.config.learningRate);
    s.hprev = h;
    s.smoothLoss = s.smoothLoss * 0.999 + loss * 0.001;
    s.position += T;
    s.iteration++;
    return loss;
  }

  /** A sample of n characters from the current hidden state, seeded with the character at the current position. */
  sample(n: number, rng: Rng, temperature = 1): number[] {
    const seed = this.ids[this.atEnd() ? 0 : this.state.position];
    const h = this.atEnd() ? new Float64Array(this.model.H) : this.state.hprev;
    return this.model.sample(h, seed, n, rng, temperature);
  }
}

export interface TrainLoopOptions {
  /** Stop after this many updates in total (counting those of a resumed run). */
  iterations?: number;
  /** Stop after this many passes over the data in total. */
  epochs?: number;
  /** Call onSample every this many updates (0: never). */
  sampleEvery?: number;
  /** Characters per sample (min-char-rnn: 200). */
  sampleLength?: number;
  rng: Rng;
  /** Called after every update. */
  onStep?: (loss: number) => void;
  /** Called every sampleEvery updates with the sampled ids. */
  onSample?: (ids: number[]) => void;
  /** Called every checkpointEvery updates; awaited. */
  onCheckpoint?: () => Promise<void>;
  checkpointEvery?: number;
  /** Checked between updates; true stops the loop (Ctrl-C). */
  stopped?: () => boolean;
}

/** Run updates until the iteration or epoch limit (whichever comes first). At least one limit must be given. */
export async function trainLoop(trainer: ScratchTrainer, opts: TrainLoopOptions): Promise<void> {
  const { iterations = Infinity, epochs = Infinity, sampleEvery = 0, sampleLength = 200 } = opts;
  if (iterations === Infinity && epochs === Infinity) throw new Error("trainLoop needs an iteration or epoch limit");
  const s = trainer.state;
  while (s.iteration < iterations && trainer.epochsDone() < epochs && !opts.stopped?.()) {
    const loss = trainer.step();
    opts.onStep?.(loss);
    if (sampleEvery > 0 && s.iteration % sampleEvery === 0) opts.onSample?.(trainer.sample(sampleLength, opts.rng));
    if (opts.checkpointEvery && opts.onCheckpoint && s.iteration % opts.checkpointEvery === 0) {
      await opts.onCheckpoint();
    }
  }
}
