// The graph's records: which op made a tensor, from which inputs, with what saved for its gradient rule. Ops call
// `record`; autograd.ts walks the nodes backwards; grad.ts holds the rules. Kept apart from both so that neither
// imports the other's module (the rules know nodes, the walk knows rules, nodes know neither).

import type { OpName, OpSaved } from "./grad.js";
import type { Tensor } from "./tensor.js";

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
 * gradients and links them to the node. Ops check `needsGrad` first when what they save costs memory.
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

/** Cut the links of a node whose rule has run: its outputs become plain tensors without gradient or history. */
export function releaseNode(node: Node): void {
  for (const o of node.outputs) {
    o.node = null;
    o.gradStorage = null; // freed with its step's scope
    // A released tensor is a constant from now on (e.g. a carried hidden state in truncated BPTT).
    o.requiresGrad = false;
  }
  node.inputs = [];
  node.outputs = [];
  (node as { saved: unknown }).saved = null;
  live--;
}
