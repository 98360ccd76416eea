// Reverse-mode automatic differentiation: the graph, no-grad mode and the backward pass.
//
// Every op that runs while gradients are enabled and has an input that requires a gradient records one `Node`:
// its op name, its input tensors, its output tensors (several for the recurrent ops: hs, hT, cT) and whatever the
// op saved for its gradient rule. Outputs point back at their node, so the graph is reachable from the loss.
//
// backward() sorts the nodes reachable from the roots topologically, runs the gradient rule of each (the table in
// grad.ts) from the loss back to the leaves, then cuts every link it walked: nodes forget their inputs, outputs and
// saved buffers, intermediate tensors forget their node and their gradient. After a training step only the leaves
// (parameters) and their `.grad` stay reachable, so a training loop does not grow the heap. `liveNodes()` counts
// nodes recorded and not yet released by a backward pass; tests use it to show the graph does not accumulate.

import type { Tensor } from "./tensor.js";
import { gradRules, type OpName, type OpSaved } from "./grad.js";

export interface Node<K extends OpName = OpName> {
  op: K;
  inputs: Tensor[];
  outputs: Tensor[];
  saved: OpSaved[K];
}

let gradEnabled = true;
let live = 0;

/** Whether ops currently record the graph. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run fn without recording the graph (sampling, evaluation). Nested calls are fine; the flag is restored. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Nodes recorded and not yet released by a backward pass (for leak tests). */
export function liveNodes(): number {
  return live;
}

/** True when an op on these inputs must record a node. */
export function needsGrad(inputs: readonly (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t && t.requiresGrad) return true;
  return false;
}

/**
 * Record a node for op `op` if any input requires a gradient (and grad mode is on). Marks the outputs as requiring
 * gradients and links them to the node. `saved` is only evaluated lazily by the caller (pass a value you computed
 * anyway); ops check `needsGrad` first when saving costs memory.
 */
export function record<K extends OpName>(op: K, inputs: Tensor[], outputs: Tensor[], saved: OpSaved[K]): void {
  if (!needsGrad(inputs)) return;
  const node: Node<K> = { op, inputs, outputs, saved };
  for (const o of outputs) {
    o.requiresGrad = true;
    o.node = node as unknown as Node;
  }
  live++;
}

/** Add `src` into t.grad, allocating it on first use. */
export function accumulate(t: Tensor, src: Float32Array): void {
  const g = gradOf(t);
  for (let i = 0; i < g.length; i++) g[i] += src[i];
}

/** t.grad, allocated as zeros on first use. */
export function gradOf(t: Tensor): Float32Array {
  if (!t.grad) t.grad = new Float32Array(t.size);
  return t.grad;
}

/**
 * Backpropagate from `roots`, seeding each root's gradient with `seeds[i]` (default: ones, i.e. d(root)/d(root)
 * for a scalar loss). Gradients of leaves accumulate (+=) across calls until zeroGrad().
 */
export function backward(roots: Tensor[], seeds?: (Float32Array | null)[]): void {
  roots.forEach((r, i) => {
    const seed = seeds?.[i] ?? new Float32Array(r.size).fill(1);
    if (seed.length !== r.size) {
      throw new Error(`backward: seed has ${seed.length} values but the tensor has ${r.size}`);
    }
    if (r.requiresGrad) accumulate(r, seed);
  });

  // Iterative post-order DFS over nodes (recursion could overflow on long unrolled graphs).
  const order: Node[] = [];
  const visited = new Set<Node>();
  const stack: { node: Node; next: number }[] = [];
  for (const r of roots) {
    if (!r.node || visited.has(r.node)) continue;
    visited.add(r.node);
    stack.push({ node: r.node, next: 0 });
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.next < top.node.inputs.length) {
        const child = top.node.inputs[top.next++].node;
        if (child && !visited.has(child)) {
          visited.add(child);
          stack.push({ node: child, next: 0 });
        }
      } else {
        order.push(top.node);
        stack.pop();
      }
    }
  }

  for (let n = order.length - 1; n >= 0; n--) {
    const node = order[n];
    let any = false;
    for (const o of node.outputs) if (o.grad) any = true;
    if (any) {
      const rule = gradRules[node.op] as (node: Node) => void;
      rule(node);
    }
    release(node);
  }
}

/** Cut the links of a node whose rule has run: its outputs become plain tensors without gradient or history. */
function release(node: Node): void {
  for (const o of node.outputs) {
    o.node = null;
    o.grad = null;
    // A released tensor is a constant from now on (e.g. a carried hidden state in truncated BPTT).
    o.requiresGrad = false;
  }
  node.inputs = [];
  node.outputs = [];
  (node as { saved: unknown }).saved = null;
  live--;
}
