// Turning a row of logits into a token: the weights the sampler draws from (temperature, top-k, top-p) and the draw.
// Both the host sampler (src/sample/generate.ts) and the backends' sampleRows kernel (which lets a GPU draw the next
// token without reading the logits back) follow this code, in this order of operations:
//
//   p_i ∝ exp((z_i - max z) / temperature)        (temperature < 1 sharpens, > 1 flattens)
//   top-k: keep the k largest p_i                  (0 = off)
//   top-p: keep the smallest set of largest p_i whose total reaches p of the whole   (1 = off)
//   the token: the first i where p_0 + ... + p_i passes u · Σ p, u uniform in [0, 1)  (drawIndex in util/rng.ts)
//
// Legend: V vocabulary size.

/** Turn logits into sampling weights in place (unnormalised probabilities; filtered entries set to 0). */
export function samplingWeights(
  logits: ArrayLike<number>,
  temperature: number,
  topK: number,
  topP: number,
  out = new Float64Array(logits.length),
): Float64Array {
  const V = logits.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let total = 0;
  for (let i = 0; i < V; i++) {
    out[i] = Math.exp((logits[i] - max) / temperature);
    total += out[i];
  }
  if ((topK > 0 && topK < V) || topP < 1) {
    // Rank once, largest first; ties broken by index so the result does not depend on the sort's stability.
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => out[b] - out[a] || a - b);
    let keep = topK > 0 ? Math.min(topK, V) : V;
    if (topP < 1) {
      // The nucleus is measured on the whole (temperature-scaled) distribution; with top-k too, the smaller set wins.
      let kept = 0;
      let mass = 0;
      for (let rank = 0; rank < keep; rank++) {
        mass += out[order[rank]];
        kept++;
        if (mass >= topP * total) break;
      }
      keep = kept;
    }
    for (let rank = keep; rank < V; rank++) out[order[rank]] = 0;
  }
  return out;
}
