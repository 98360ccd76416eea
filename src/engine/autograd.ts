// Reverse-mode automatic differentiation: the backward pass.
//
// Every op that runs while gradients are enabled and has an input that requires a gradient records one `Node`
// (node.ts): its op name, its input tensors, its output tensors (several for the recurrent ops: hs, hT, cT) and
// whatever the op saved for its gradient rule. Outputs point back at their node, so the graph is reachable from the loss.
//
// backward() sorts the nodes reachable from the roots topologically, runs the gradient rule of each (the table in
// grad.ts) from the loss back to the leaves, then cuts every link it walked: nodes forget their inputs, outputs and
// saved buffers, intermediate tensors forget their node and their gradient. After a training step only the leaves
// (parameters) and their gradients stay reachable; the step's scope (scope.ts) frees the storage of everything else.

import type { Tensor } from "./tensor.js";
import { gradRules } from "./grad.js";
import { releaseNode, type Node } from "./node.js";

export { isGradEnabled, liveNodes, needsGrad, noGrad, record, type Node } from "./node.js";

/**
 * Backpropagate from `roots`, seeding each root's gradient with `seeds[i]` (default: ones, i.e. d(root)/d(root)
 * for a scalar loss). Gradients of leaves accumulate (+=) across calls until zeroGrad().
 */
export function backward(roots: Tensor[], seeds?: (Float32Array | null)[]): void {
  roots.forEach((r, i) => {
    const seed = seeds?.[i];
    if (seed && seed.length !== r.size) {
      throw new Error(`backward: seed has ${seed.length} values but the tensor has ${r.size}`);
    }
    if (!r.requiresGrad) return;
    const be = r.backend;
    const g = r.gradOf();
    if (!seed) {
      // += 1 per element: a fresh gradient is filled, an existing one gets ones added through a temporary.
      const ones = be.alloc(r.size);
      be.fill(ones, 1);
      be.scale(ones, g, r.size, 1, true);
      be.free(ones);
    } else {
      const tmp = be.alloc(r.size);
      be.write(tmp, seed);
      be.scale(tmp, g, r.size, 1, true);
      be.free(tmp);
    }
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
    for (const o of node.outputs) if (o.gradStorage) any = true;
    if (any) {
      const rule = gradRules[node.op] as (node: Node) => void;
      rule(node);
    }
    releaseNode(node);
  }
}
