// A backend of any storage seen as one on host Float32Arrays, for tests written against plain arrays (float64
// references, finite differences): each kernel call copies its Float32Array arguments (also those inside an args
// object) into fresh storage, runs the kernel, copies every one of them back and frees the storage.

import type { Backend, Storage } from "../../src/engine/backend.js";

const MEMORY = new Set(["alloc", "free", "write", "read", "view", "copy", "fill", "flush", "destroy", "adopt"]);

export function onHost<S extends Storage>(be: Backend<S>): Backend<Float32Array> {
  return new Proxy(be as unknown as Backend<Float32Array>, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function" || typeof prop !== "string" || MEMORY.has(prop)) {
        return typeof v === "function" ? v.bind(target) : v;
      }
      return (...args: unknown[]) => {
        const taken: [Float32Array, S][] = [];
        const put = (a: unknown): unknown => {
          if (!(a instanceof Float32Array)) return a;
          const s = be.alloc(a.length);
          be.write(s, a);
          taken.push([a, s]);
          return s;
        };
        const mapped = args.map((a) =>
          a !== null &&
          typeof a === "object" &&
          !(a instanceof Float32Array) &&
          !ArrayBuffer.isView(a) &&
          !Array.isArray(a)
            ? Object.fromEntries(Object.entries(a).map(([k, x]) => [k, put(x)]))
            : put(a),
        );
        try {
          (v as (...a: unknown[]) => void).apply(target, mapped);
          for (const [a, s] of taken) a.set(be.view(s));
        } finally {
          for (const [, s] of taken) be.free(s);
        }
      };
    },
  });
}
