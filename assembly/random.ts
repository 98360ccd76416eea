// Random numbers made in the module's memory: dropout's mask from a counter-based hash. The same uint32
// arithmetic as dropHash in src/engine/backends/js-ops.ts (and the WGSL copy), so masks match bit for bit.

@inline
function lowbias32(x: u32): u32 {
  x ^= x >> 16;
  x *= 0x7feb352d;
  x ^= x >> 15;
  x *= 0x846ca68b;
  x ^= x >> 16;
  return x;
}

/** out[i] = 0 when hash(seed, i) < threshold, else keep, i < n (see dropoutMask in src/engine/backend.ts). */
export function dropoutMask(out: usize, n: i32, seed: u32, threshold: u32, keep: f32): void {
  for (let i = 0; i < n; i++) {
    let h = <u32>i * 0x9e3779b9 + seed;
    h = lowbias32(h);
    h = lowbias32(h ^ seed);
    store<f32>(out + (<usize>i << 2), h < threshold ? 0 : keep);
  }
}
