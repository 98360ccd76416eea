// A small seeded random generator: every random draw in charlm comes from one of these, passed in explicitly.
// xoshiro128** (Blackman & Vigna): 128 bits of state, period 2^128 - 1, fast in 32-bit JavaScript arithmetic.
// The state is four uint32 words, so it can be saved in a checkpoint and restored exactly.

export type RngState = [number, number, number, number];

export class Rng {
  private s: Uint32Array;

  constructor(seed: number | RngState = 0) {
    this.s = new Uint32Array(4);
    if (Array.isArray(seed)) {
      this.setState(seed);
    } else {
      // splitmix32 spreads one integer seed over the four words, so nearby seeds give unrelated streams.
      let x = seed >>> 0;
      for (let i = 0; i < 4; i++) {
        x = (x + 0x9e3779b9) >>> 0;
        let z = x;
        z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
        z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
        this.s[i] = (z ^ (z >>> 16)) >>> 0;
      }
      if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
    }
  }

  /** Next uint32. */
  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform float in [0, 1) with 32 bits of randomness. */
  random(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.random() * n);
  }

  /** Standard normal draw (Box-Muller; one pair of uniforms per draw so the state stays four words). */
  normal(): number {
    const u1 = 1 - this.random(); // (0, 1]: log is finite
    const u2 = this.random();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Index drawn from unnormalised non-negative weights p[0..n) (one uniform draw; see drawIndex). */
  categorical(p: ArrayLike<number>, n = p.length): number {
    return drawIndex(p, this.random(), n);
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(a: T[] | Int32Array | Uint32Array): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = a[i];
      a[i] = a[j];
      a[j] = tmp;
    }
  }

  getState(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  setState(state: RngState): void {
    if (state.length !== 4 || state.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffffffff)) {
      throw new Error(`invalid RNG state ${JSON.stringify(state)}; expected four uint32 words`);
    }
    this.s.set(state);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * The categorical draw for a given uniform u in [0, 1): the first index where the running sum of p passes u times
 * their total. Rng.categorical draws u itself; the samplers on a backend (sampleRows) take u from a buffer.
 */
export function drawIndex(p: ArrayLike<number>, u: number, n = p.length): number {
  let total = 0;
  for (let i = 0; i < n; i++) total += p[i];
  let r = u * total;
  for (let i = 0; i < n; i++) {
    r -= p[i];
    if (r < 0) return i;
  }
  // Rounding can leave r a hair above zero: return the last index with non-zero weight.
  for (let i = n - 1; i >= 0; i--) if (p[i] > 0) return i;
  return n - 1;
}
