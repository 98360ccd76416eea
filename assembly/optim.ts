// Optimizer updates and global-norm clipping.
//
// Legend: n elements; w weights, g gradients, m/v/s/sum/buf the optimizer's slots (float32 in memory). As the js
// reference backend does (src/engine/backends/js-ops.ts), each element's update is computed in float64 from the
// float32 values, with the slot stored as float32 and read back rounded before the weight update, in the same order:
// the same operations on the same values, so wasm updates are bit-identical to js ones. Hyperparameters come in a float64 block at hp
// (written by src/engine/backends/wasm/kernels.ts; the slot order is in each kernel's comment). Ranged: elements
// [i0, i1), each element independent of the others (bit-identical across thread counts).

/** hp: lr β1 β2 eps wd bc1 bc2. m = β1 m + (1-β1) g'; v = β2 v + (1-β2) g'²; w -= lr (m/bc1)/(sqrt(v/bc2) + eps). */
export function adam(w: usize, g: usize, m: usize, v: usize, hp: usize, i0: i32, i1: i32): void {
  const lr = load<f64>(hp);
  const b1 = load<f64>(hp, 8);
  const b2 = load<f64>(hp, 16);
  const eps = load<f64>(hp, 24);
  const wd = load<f64>(hp, 32);
  const bc1 = load<f64>(hp, 40);
  const bc2 = load<f64>(hp, 48);
  for (let i = i0; i < i1; i++) {
    const o = <usize>i * 4;
    const wi = <f64>load<f32>(w + o);
    const gi = wd != 0 ? <f64>load<f32>(g + o) + wd * wi : <f64>load<f32>(g + o);
    const mi = <f64>(<f32>(b1 * <f64>load<f32>(m + o) + (1 - b1) * gi));
    const vi = <f64>(<f32>(b2 * <f64>load<f32>(v + o) + (1 - b2) * gi * gi));
    store<f32>(m + o, <f32>mi);
    store<f32>(v + o, <f32>vi);
    store<f32>(w + o, <f32>(wi - (lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + eps)));
  }
}

/** hp: lr ρ eps wd. s = ρ s + (1-ρ) g'²; w -= lr g'/(sqrt(s) + eps). */
export function rmsprop(w: usize, g: usize, s: usize, hp: usize, i0: i32, i1: i32): void {
  const lr = load<f64>(hp);
  const rho = load<f64>(hp, 8);
  const eps = load<f64>(hp, 16);
  const wd = load<f64>(hp, 24);
  for (let i = i0; i < i1; i++) {
    const o = <usize>i * 4;
    const wi = <f64>load<f32>(w + o);
    const gi = wd != 0 ? <f64>load<f32>(g + o) + wd * wi : <f64>load<f32>(g + o);
    const si = <f64>(<f32>(rho * <f64>load<f32>(s + o) + (1 - rho) * gi * gi));
    store<f32>(s + o, <f32>si);
    store<f32>(w + o, <f32>(wi - (lr * gi) / (Math.sqrt(si) + eps)));
  }
}

/** hp: lr eps wd. G += g'²; w -= lr g'/(sqrt(G) + eps). */
export function adagrad(w: usize, g: usize, sum: usize, hp: usize, i0: i32, i1: i32): void {
  const lr = load<f64>(hp);
  const eps = load<f64>(hp, 8);
  const wd = load<f64>(hp, 16);
  for (let i = i0; i < i1; i++) {
    const o = <usize>i * 4;
    const wi = <f64>load<f32>(w + o);
    const gi = wd != 0 ? <f64>load<f32>(g + o) + wd * wi : <f64>load<f32>(g + o);
    const si = <f64>(<f32>(<f64>load<f32>(sum + o) + gi * gi));
    store<f32>(sum + o, <f32>si);
    store<f32>(w + o, <f32>(wi - (lr * gi) / (Math.sqrt(si) + eps)));
  }
}

/** hp: lr μ nesterov(0/1) wd first(0/1). buf = g' (first) or μ buf + g'; step = nesterov ? g' + μ buf : buf; μ = 0: step = g'. */
export function sgd(w: usize, g: usize, buf: usize, hp: usize, i0: i32, i1: i32): void {
  const lr = load<f64>(hp);
  const mu = load<f64>(hp, 8);
  const nesterov = load<f64>(hp, 16) != 0;
  const wd = load<f64>(hp, 24);
  const first = load<f64>(hp, 32) != 0;
  for (let i = i0; i < i1; i++) {
    const o = <usize>i * 4;
    const wi = <f64>load<f32>(w + o);
    const gi = wd != 0 ? <f64>load<f32>(g + o) + wd * wi : <f64>load<f32>(g + o);
    let step = gi;
    if (mu != 0) {
      const bi = <f64>(<f32>(first ? gi : mu * <f64>load<f32>(buf + o) + gi));
      store<f32>(buf + o, <f32>bi);
      step = nesterov ? gi + mu * bi : bi;
    }
    store<f32>(w + o, <f32>(wi - lr * step));
  }
}

/** out = Σ_i x[i]², i < n, summed in float64 in order. */
export function sumSquares(x: usize, n: i32, out: usize): void {
  let s: f64 = 0;
  for (let i = 0; i < n; i++) {
    const v = <f64>load<f32>(x + <usize>i * 4);
    s += v * v;
  }
  store<f32>(out, <f32>s);
}

/** out[0] = ‖g‖ = √Σ sq[i] (in order); out[1] = maxNorm/(‖g‖ + 1e-6) when ‖g‖ > maxNorm (finite), else 1. */
export function clipFactor(sq: usize, count: i32, maxNorm: f64, out: usize): void {
  let s: f64 = 0;
  for (let i = 0; i < count; i++) s += <f64>load<f32>(sq + <usize>i * 4);
  const norm = Math.sqrt(s);
  store<f32>(out, <f32>norm);
  store<f32>(out, <f32>(isFinite(norm) && maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1), 4);
}
