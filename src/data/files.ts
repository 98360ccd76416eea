// File helpers shared by the data loaders and the checkpoint writers (atomic writes: ../checkpoint/atomic.ts).

import { createHash } from "node:crypto";

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
