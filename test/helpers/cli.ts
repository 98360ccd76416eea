// Runs `charlm ...` through main() in the test's own process (much faster than spawning one), capturing the text it
// writes. Only strings are captured: the test runner reports to its parent through this process's stdout in binary
// chunks, and those must go through untouched.

import { main } from "../../src/cli/main.js";

export async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const w1 = process.stdout.write;
  const w2 = process.stderr.write;
  const capture = (original: typeof w1, sink: (s: string) => void) =>
    function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
      if (typeof chunk === "string") {
        sink(chunk);
        return true;
      }
      return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof w1;
  process.stdout.write = capture(w1, (s) => (out += s));
  process.stderr.write = capture(w2, (s) => (err += s));
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}
