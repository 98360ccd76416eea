// The GPT-style decoder-only transformer (a character-level nanoGPT):
//
//   x = wte[tokens] + wpe[0 .. T)                                  token + learned position embeddings   (B, T, C)
//   L x block:  x = x + attn(ln1(x));  x = x + mlp(ln2(x))         pre-LayerNorm residual blocks
//   logits = lnf(x) · head                                         final LayerNorm, untied LM head       (B, T, V)
//
//   attn(x) = q, k, v = split(x · wqkv + bqkv) (one fused projection), nH heads of hd = C / nH channels,
//             softmax(q kᵀ / √hd over the keys at or before the query) v, heads joined, then · wo + bo
//   mlp(x)  = gelu(x · wfc + bfc) · wproj + bproj,  hidden width 4C, GELU in its tanh form (GPT-2's)
//
// Choices, and where they differ from nanoGPT:
// - The LM head has its own (C, V) weight and no bias: nanoGPT ties it to wte; here it is untied, so a checkpoint
//   holds both and the output layer can learn character frequencies separately from the input embedding.
// - Dropout (training only) on the embedding sum and on each residual branch before it is added back, as nanoGPT;
//   not on the attention weights, because the engine's fused attention op has no dropout inside it.
// - bias false drops every linear bias and the LayerNorm betas (nanoGPT's bias=False): the layerNorm op still
//   gets a constant zero beta that no optimizer sees.
// - Weights are stored (in, out) and applied as x · W, like Dense; PyTorch's nn.Linear stores the transpose.
// - Initialisation as GPT-2: N(0, 0.02) for embeddings and weights, N(0, 0.02/√(2L)) for the two projections that
//   write into the residual stream (wo, wproj), zero biases, LayerNorm gamma 1 and beta 0.
//
// Generation: step() keeps a key/value cache, so each new character runs the blocks on one position only. The
// positions are learned and absolute, so once the window holds blockSize tokens the cached keys cannot slide:
// from then on each step reruns the last blockSize tokens (exactly what forward() on that window gives), the last
// block for the newest position alone (lastRowBlock: only its logits are asked for). With a window stride S
// (initialState's windowStride) a full window drops its S oldest tokens at once: that step reruns the
// blockSize - S + 1 tokens left, and the next S - 1 steps are cached ones again, so past the window a character
// costs about blockSize / S positions instead of blockSize, and sees between blockSize - S + 1 and blockSize of
// them (each step still gives exactly what forward() gives on the window it holds).
// prefill() feeds many tokens at once (a prime): the window T steps would leave, in one pass. stepFrom() does
// what step() does with the token given on the backend (a sampler's draw there, never read back): the window of
// ids is then kept on the backend too, and step() cannot continue that state.
//
// Legend: B batch, T time (at most blockSize), C channels (nEmbd), nH heads, hd = C / nH head size, V vocabulary,
// L layers, P positions held in the step cache.

import { noGrad } from "../engine/autograd.js";
import {
  add,
  causalSelfAttention,
  dropout,
  embedding,
  embeddingFrom,
  gelu,
  layerNorm,
  linear,
  matmul,
  reshape,
  slice,
  softmaxCrossEntropy,
  split,
} from "../engine/ops.js";
import { Tensor, uninit } from "../engine/tensor.js";
import { CharlmError } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import type { GptModelConfig } from "./config.js";
import type { ForwardResult, LanguageModel, State } from "./contract.js";

export interface GptForwardOptions {
  targets?: Int32Array; // (B, T): with them, forward also returns the mean cross-entropy
  state?: State; // ignored: a GPT carries nothing between calls; its context is the T tokens given
  training?: boolean; // enables dropout
  rng?: Rng; // dropout draws; pass the training loop's Rng so a resumed run repeats them (default: the model's own)
}

/** step()'s key/value cache. It is updated in place and returned: keep only the latest. */
export interface GptState {
  B: number;
  len: number; // positions filled, P <= blockSize
  tokens: Int32Array; // (B, blockSize): the window of ids, row b in [b·blockSize, b·blockSize + len)
  k: Tensor[]; // per layer (B, blockSize, C): keys of the cached positions, on the model's backend
  v: Tensor[]; // per layer (B, blockSize, C): values
  ids?: Tensor; // (B, blockSize) the window on the backend, as float ids, once stepFrom has run (tokens is then stale)
  stride: number; // oldest positions a full window drops at once (initialState's windowStride), 1 .. blockSize
}

// ---------------------------------------------------------------------------------------------------- pieces

interface Norm {
  gamma: Tensor; // (C)
  beta: Tensor | null; // (C); null without bias
}

interface Block {
  ln1: Norm;
  wqkv: Tensor; // (C, 3C): q, k, v side by side
  bqkv: Tensor | null; // (3C)
  wo: Tensor; // (C, C)
  bo: Tensor | null; // (C)
  ln2: Norm;
  wfc: Tensor; // (C, 4C)
  bfc: Tensor | null; // (4C)
  wproj: Tensor; // (4C, C)
  bproj: Tensor | null; // (C)
}

/** Attention given the fused projection (B, T, 3C) -> (B, T, C): the whole causal sequence, or against a cache. */
type Attend = (qkv: Tensor) => Tensor;

function normal(size: number, std: number, rng: Rng | null): Float32Array {
  const out = new Float32Array(size);
  if (rng) for (let i = 0; i < size; i++) out[i] = std * rng.normal();
  return out;
}

function dense(x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  return b ? linear(x, w, b) : matmul(x, w); // (..., out)
}

// ---------------------------------------------------------------------------------------------------- the model

export class GptModel implements LanguageModel {
  readonly config: GptModelConfig & Record<string, unknown>;
  readonly wte: Tensor; // (V, C)
  readonly wpe: Tensor; // (blockSize, C)
  readonly blocks: Block[];
  readonly lnf: Norm;
  readonly head: Tensor; // (C, V)
  private readonly params = new Map<string, Tensor>();
  /** The beta of every LayerNorm when bias is false: zeros, not a parameter. */
  private readonly zeroBeta: Tensor;
  /** Dropout draws when the caller passes no rng. */
  private readonly ownRng: Rng;

  /** rng null: weights zero (LayerNorm gains one), for a model whose weights are loaded next. */
  constructor(config: GptModelConfig, rng: Rng | null) {
    this.config = { ...config };
    const { vocabSize: V, blockSize, nLayer: L, nEmbd: C, bias } = config;
    const std = 0.02;
    const residStd = 0.02 / Math.sqrt(2 * L);
    // Draw order is part of the determinism contract: wte, wpe, each block (wqkv, wo, wfc, wproj), head.
    const param = (name: string, shape: number[], data: Float32Array): Tensor => {
      const t = new Tensor(data, shape, true);
      t.name = name;
      this.params.set(name, t);
      return t;
    };
    const vec = (name: string, n: number, on: boolean): Tensor | null =>
      on ? param(name, [n], new Float32Array(n)) : null;
    const norm = (name: string): Norm => ({
      gamma: param(`${name}.gamma`, [C], new Float32Array(C).fill(1)),
      beta: vec(`${name}.beta`, C, bias),
    });
    this.wte = param("wte", [V, C], normal(V * C, std, rng));
    this.wpe = param("wpe", [blockSize, C], normal(blockSize * C, std, rng));
    this.blocks = [];
    for (let l = 0; l < L; l++) {
      const p = `h.${l}`;
      const ln1 = norm(`${p}.ln1`);
      const wqkv = param(`${p}.attn.wqkv`, [C, 3 * C], normal(C * 3 * C, std, rng));
      const bqkv = vec(`${p}.attn.bqkv`, 3 * C, bias);
      const wo = param(`${p}.attn.wo`, [C, C], normal(C * C, residStd, rng));
      const bo = vec(`${p}.attn.bo`, C, bias);
      const ln2 = norm(`${p}.ln2`);
      const wfc = param(`${p}.mlp.wfc`, [C, 4 * C], normal(C * 4 * C, std, rng));
      const bfc = vec(`${p}.mlp.bfc`, 4 * C, bias);
      const wproj = param(`${p}.mlp.wproj`, [4 * C, C], normal(4 * C * C, residStd, rng));
      const bproj = vec(`${p}.mlp.bproj`, C, bias);
      this.blocks.push({ ln1, wqkv, bqkv, wo, bo, ln2, wfc, bfc, wproj, bproj });
    }
    this.lnf = norm("lnf");
    this.head = param("head.weight", [C, V], normal(C * V, std, rng));
    this.zeroBeta = Tensor.zeros([C]);
    this.ownRng = new Rng(rng ? rng.nextU32() : 0);
  }

  /** Named parameters in a fixed order: wte, wpe, h.0.*, ..., lnf.*, head.weight (docs/models.md). */
  parameters(): Map<string, Tensor> {
    return new Map(this.params);
  }

  /** Rows for summary(): one per embedding, block, final norm and head, with output width and parameter count. */
  summaryRows(): { name: string; kind: string; width: number; params: number }[] {
    const { vocabSize: V, nEmbd: C, nLayer: L } = this.config;
    const count = (prefix: string) => {
      let n = 0;
      for (const [name, t] of this.params) if (name === prefix || name.startsWith(`${prefix}.`)) n += t.size;
      return n;
    };
    const rows = [
      { name: "wte", kind: "Embedding", width: C, params: count("wte") },
      { name: "wpe", kind: "PositionEmbedding", width: C, params: count("wpe") },
    ];
    for (let l = 0; l < L; l++) rows.push({ name: `h.${l}`, kind: "Block", width: C, params: count(`h.${l}`) });
    rows.push({ name: "lnf", kind: "LayerNormalization", width: C, params: count("lnf") });
    rows.push({ name: "head", kind: "Dense", width: V, params: count("head") });
    return rows;
  }

  /** tokens (B, T) with T <= blockSize -> logits (B, T, V) and, given targets, the mean cross-entropy. */
  forward(tokens: Int32Array, B: number, T: number, opts: GptForwardOptions = {}): ForwardResult {
    this.checkTokens(tokens, B, T);
    const training = opts.training ?? false;
    const rng = opts.rng ?? this.ownRng;
    const { nEmbd: C, nHead } = this.config;
    const attend: Attend = (qkv) => {
      const [q, k, v] = split(qkv, 2, [C, C, C]); // 3 x (B, T, C)
      return causalSelfAttention(q, k, v, nHead); // (B, T, C)
    };
    let x = this.embed(tokens, B, T, 0, rng, training); // (B, T, C)
    for (const blk of this.blocks) x = this.block(blk, x, attend, rng, training);
    const logits = matmul(this.norm(x, this.lnf), this.head); // (B, T, V)
    const result: ForwardResult = { logits };
    if (opts.targets) {
      if (opts.targets.length !== B * T) {
        throw new CharlmError(`model targets: ${opts.targets.length} ids do not fill a (${B}, ${T}) batch`);
      }
      result.loss = softmaxCrossEntropy(logits, opts.targets);
    }
    return result;
  }

  /** An empty key/value cache for B rows; windowStride: positions a full window drops at once (default 1). */
  initialState(B: number, opts: { windowStride?: number } = {}): GptState {
    const { blockSize, nEmbd: C, nLayer: L } = this.config;
    const stride = opts.windowStride ?? 1;
    checkStrideFits(stride, blockSize);
    const cache = () => Array.from({ length: L }, () => Tensor.zeros([B, blockSize, C]));
    return { B, len: 0, tokens: new Int32Array(B * blockSize), k: cache(), v: cache(), stride };
  }

  /** One token per batch row (B) -> logits (B, V) for the next position, and the updated cache; no graph. */
  step(tokens: Int32Array, state: State): { logits: Tensor; state: GptState } {
    const B = tokens.length;
    const s = this.checkState(state, B);
    const N = this.config.blockSize;
    this.checkTokens(tokens, B, 1);
    if (s.ids) {
      throw new CharlmError("model state: stepFrom advanced this cache on the backend; continue it with stepFrom");
    }
    let ids: Int32Array;
    let T: number;
    if (s.len < N) {
      for (let b = 0; b < B; b++) s.tokens[b * N + s.len] = tokens[b];
      ids = tokens.slice(); // (B, 1) at position len
      T = 1;
    } else {
      // Window full: drop its `stride` oldest tokens, add the new one and recompute every position left (each
      // token's position embedding changed)
      const keep = N - s.stride;
      T = keep + 1;
      ids = new Int32Array(B * T); // (B, T)
      for (let b = 0; b < B; b++) {
        s.tokens.copyWithin(b * N, b * N + s.stride, (b + 1) * N);
        s.tokens[b * N + keep] = tokens[b];
        ids.set(s.tokens.subarray(b * N, b * N + T), b * T);
      }
      s.len = 0;
    }
    const logits = noGrad(() => this.cachedStep(this.embed(ids, B, T, s.len, this.ownRng, false), s, B, T));
    return { logits, state: s };
  }

  /**
   * T tokens per batch row (tokens (B, T), any T >= 1) into the cache, as T calls of step() leave it, in one pass:
   * the window those steps end with (the stride's schedule applied here, the one place besides step) goes through
   * the cache at once, from where it stands when no step would drop a position, else from an empty cache (what a
   * rerun does). -> the logits after the last token (B, V), as step() gives them up to float rounding. A prime of
   * any length then costs one forward pass of at most blockSize positions.
   */
  prefill(tokens: Int32Array, B: number, T: number, state: State): { logits: Tensor; state: GptState } {
    const s = this.checkState(state, B);
    const N = this.config.blockSize;
    if (!(Number.isInteger(T) && T >= 1)) {
      throw new CharlmError(`model input: prefill takes at least 1 token per row, not ${T}; pass 1 or more`);
    }
    this.checkIds(tokens, B, T);
    if (s.ids) {
      throw new CharlmError("model state: stepFrom advanced this cache on the backend; continue it with stepFrom");
    }
    let ids = tokens;
    let n = T; // positions fed, from s.len
    if (s.len + T <= N) {
      for (let b = 0; b < B; b++) s.tokens.set(tokens.subarray(b * T, (b + 1) * T), b * N + s.len);
    } else {
      // some step would find the window full: it ends holding the last n tokens of the window so far and these
      n = windowAfter(s.len, T, N, s.stride);
      const kept = Math.max(0, n - T); // of the window so far: its last `kept`, then the last n - kept of these
      ids = new Int32Array(B * n);
      for (let b = 0; b < B; b++) {
        ids.set(s.tokens.subarray(b * N + s.len - kept, b * N + s.len), b * n);
        ids.set(tokens.subarray((b + 1) * T - (n - kept), (b + 1) * T), b * n + kept);
        s.tokens.set(ids.subarray(b * n, (b + 1) * n), b * N);
      }
      s.len = 0;
    }
    const logits = noGrad(() => this.cachedStep(this.embed(ids, B, n, s.len, this.ownRng, false), s, B, n));
    return { logits, state: s };
  }

  /**
   * step() with the tokens given on the backend, as float ids at ids[at .. at + B) (what sampleTokens draws), so
   * that generation never reads them back: the window moves on the backend, a copy per row.
   */
  stepFrom(ids: Tensor, at: number, B: number, state: State): { logits: Tensor; state: GptState } {
    const s = this.checkState(state, B);
    const N = this.config.blockSize;
    const be = this.wte.backend;
    if (!(Number.isInteger(at) && at >= 0 && at + B <= ids.size)) {
      throw new CharlmError(`model input: ${B} ids from position ${at} do not fit in ${ids.size}`);
    }
    if (!s.ids) {
      // the window so far (the prime, fed by step) moves to the backend; it outlives this step's scope
      s.ids = new Tensor(Float32Array.from(s.tokens), [B, N], false, be);
    }
    let T = 1;
    if (s.len < N) {
      for (let b = 0; b < B; b++) be.copy(ids.storage, at + b, s.ids.storage, b * N + s.len, 1);
    } else {
      // Window full: drop its `stride` oldest tokens, add the new one and recompute every position left, as step()
      // does; `window` the (B, T) ids of those positions
      const keep = N - s.stride;
      T = keep + 1;
      const moved = uninit(be, [B, N]);
      for (let b = 0; b < B; b++) {
        if (keep > 0) be.copy(s.ids.storage, b * N + s.stride, moved.storage, b * N, keep);
        be.copy(ids.storage, at + b, moved.storage, b * N + keep, 1);
      }
      s.ids.dispose();
      s.ids = moved;
      s.len = 0;
    }
    const logits = noGrad(() => {
      if (T === 1) {
        const x = add(embeddingFrom(this.wte, ids, at, [B, 1]), embedding(this.wpe, Int32Array.of(s.len), [1]));
        return this.cachedStep(x, s, B, 1);
      }
      let window = s.ids!;
      if (T < N && B > 1) {
        window = uninit(be, [B, T]);
        for (let b = 0; b < B; b++) be.copy(s.ids!.storage, b * N, window.storage, b * T, T);
      }
      const x = this.embedFrom(window, B, T);
      if (window !== s.ids) window.dispose();
      return this.cachedStep(x, s, B, T);
    });
    return { logits, state: s };
  }

  /** The blocks on T new positions from s.len against the cache, then the logits of the last; advances s.len. */
  private cachedStep(x: Tensor, s: GptState, B: number, T: number): Tensor {
    const pos0 = s.len;
    const L = this.blocks.length;
    this.blocks.forEach((blk, l) => {
      const attend = (qkv: Tensor) => this.cachedAttention(qkv, s.k[l], s.v[l], pos0);
      // only the newest position is predicted from: the last block needs every position's keys and values, and
      // the rest of its work (attention, projections, MLP) for that position alone
      x = l === L - 1 && T > 1 ? this.lastRowBlock(blk, x, s, l, B, T) : this.block(blk, x, attend, this.ownRng, false);
    });
    const last = T > 1 && L > 0 ? x : slice(x, 1, T - 1, T); // (B, 1, C)
    s.len += T;
    return reshape(matmul(this.norm(last, this.lnf), this.head), [B, this.config.vocabSize]); // (B, V)
  }

  /**
   * block() on T new positions in the cache for the last of them alone: the keys and values of the first T - 1
   * go into the cache as they are, then the last position attends to all of them (its attention, and so the rest
   * of the block, one row). (B, T, C) -> (B, 1, C), the same values as block()'s last row.
   */
  private lastRowBlock(blk: Block, x: Tensor, s: GptState, l: number, B: number, T: number): Tensor {
    const { nEmbd: C, blockSize: N } = this.config;
    const attendLast = (qkv: Tensor): Tensor => {
      const be = qkv.backend;
      for (let b = 0; b < B; b++) {
        const from = b * T * 3 * C;
        const to = (b * N + s.len) * C;
        be.copyBlocks(qkv.storage, from + C, 3 * C, s.k[l].storage, to, C, C, T - 1, false);
        be.copyBlocks(qkv.storage, from + 2 * C, 3 * C, s.v[l].storage, to, C, C, T - 1, false);
      }
      return this.cachedAttention(slice(qkv, 1, T - 1, T), s.k[l], s.v[l], s.len + T - 1);
    };
    return this.block(blk, x, attendLast, this.ownRng, false);
  }

  /** wte[window] + wpe[0 .. T) for the first T ids of each row of a window held on the backend (B rows of T, or B = 1). */
  private embedFrom(window: Tensor, B: number, T: number): Tensor {
    const pos = Int32Array.from({ length: T }, (_, t) => t);
    return add(embeddingFrom(this.wte, window, 0, [B, T]), embedding(this.wpe, pos, [T]));
  }

  // ------------------------------------------------------------------------------------------------ internals

  /** wte[ids] + wpe[pos0 .. pos0 + T), then dropout. */
  private embed(ids: Int32Array, B: number, T: number, pos0: number, rng: Rng, training: boolean): Tensor {
    const pos = new Int32Array(T);
    for (let t = 0; t < T; t++) pos[t] = pos0 + t;
    const x = add(embedding(this.wte, ids, [B, T]), embedding(this.wpe, pos, [T])); // (B, T, C) + (T, C)
    return dropout(x, this.config.dropout, rng, training);
  }

  /** One pre-LayerNorm block: x + attn(ln1(x)), then + mlp(ln2(x)). (B, T, C) -> (B, T, C). */
  private block(blk: Block, x: Tensor, attend: Attend, rng: Rng, training: boolean): Tensor {
    const p = this.config.dropout;
    const qkv = dense(this.norm(x, blk.ln1), blk.wqkv, blk.bqkv); // (B, T, 3C)
    const a = dense(attend(qkv), blk.wo, blk.bo); // (B, T, C), or its last rows (lastRowBlock)
    const T = x.shape[1];
    if (a.shape[1] < T) x = slice(x, 1, T - a.shape[1], T); // the rest of the block on those rows alone
    x = add(x, dropout(a, p, rng, training));
    const h = gelu(dense(this.norm(x, blk.ln2), blk.wfc, blk.bfc)); // (B, T, 4C)
    const m = dense(h, blk.wproj, blk.bproj); // (B, T, C)
    return add(x, dropout(m, p, rng, training));
  }

  private norm(x: Tensor, n: Norm): Tensor {
    return layerNorm(x, n.gamma, n.beta ?? this.zeroBeta, 1e-5);
  }

  /**
   * Attention for T new positions pos0 .. pos0+T-1 against the cache (B, blockSize, C): their keys and values are
   * written into it first, then query i attends to cached positions 0 .. pos0+i. Forward-only (under noGrad).
   */
  private cachedAttention(qkv: Tensor, K: Tensor, Vc: Tensor, pos0: number): Tensor {
    const [B, T] = qkv.shape;
    const { nEmbd: C, nHead, blockSize: N } = this.config;
    const out = uninit(qkv.backend, [B, T, C]);
    qkv.backend.attentionCached(qkv.storage, K.storage, Vc.storage, out.storage, B, T, C, nHead, N, pos0);
    return out;
  }

  private checkTokens(tokens: Int32Array, B: number, T: number): void {
    const { blockSize } = this.config;
    if (T > blockSize) {
      throw new CharlmError(
        `model input: ${T} positions exceed the GPT's context of ${blockSize} (blockSize); pass at most ${blockSize} tokens per row`,
      );
    }
    this.checkIds(tokens, B, T);
  }

  /** tokens fill a (B, T) batch with ids of the vocabulary. */
  private checkIds(tokens: Int32Array, B: number, T: number): void {
    const V = this.config.vocabSize;
    if (tokens.length !== B * T) {
      throw new CharlmError(`model input: ${tokens.length} tokens do not fill a (${B}, ${T}) batch; pass B*T ids`);
    }
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!(id >= 0 && id < V)) {
        const at = `(${Math.floor(i / T)}, ${i % T})`;
        throw new CharlmError(`model input: token id ${id} at ${at} is outside the vocabulary [0, ${V})`);
      }
    }
  }

  private checkState(state: State, B: number): GptState {
    const s = state as GptState;
    const { blockSize: N, nEmbd: C, nLayer: L } = this.config;
    const ok =
      s !== null &&
      typeof s === "object" &&
      s.B === B &&
      Number.isInteger(s.len) &&
      s.len >= 0 &&
      s.len <= N &&
      Number.isInteger(s.stride) &&
      s.stride >= 1 &&
      s.stride <= N &&
      s.tokens instanceof Int32Array &&
      s.tokens.length === B * N &&
      Array.isArray(s.k) &&
      Array.isArray(s.v) &&
      s.k.length === L &&
      s.v.length === L &&
      [...s.k, ...s.v].every((a) => a instanceof Tensor && a.size === B * N * C);
    if (!ok) {
      throw new CharlmError(`model state: expected the key/value cache from initialState(${B}); pass that`);
    }
    return s;
  }
}

/**
 * A window stride against a GPT's blockSize: an integer in 1 .. blockSize, else a one-line CharlmError. The model's
 * initialState checks it, and the sampler (checkWindowStride) before anything is generated.
 */
export function checkStrideFits(stride: number, blockSize: number): void {
  if (!(Number.isInteger(stride) && stride >= 1 && stride <= blockSize)) {
    throw new CharlmError(
      `window stride ${stride} does not fit the GPT's context of ${blockSize} (blockSize); pass 1 to ${blockSize}`,
    );
  }
}

/**
 * Positions a window of N holds after T more steps from len, where a full window drops its S oldest at the next
 * step: it fills up to N, then each step past it drops S and adds one (N - S + 1), and grows back to N.
 */
function windowAfter(len: number, T: number, N: number, S: number): number {
  if (len + T <= N) return len + T;
  const past = T - (N - len); // steps that find the window full, or grow it back after a drop
  return N - S + 1 + ((past - 1) % S);
}
