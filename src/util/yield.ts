// A macrotask break: code that awaits only settled promises (a training step on the js or wasm backend) never lets
// timers, signal handlers or messages run. Awaiting this does, at the cost of microseconds: setImmediate in Node, a
// MessageChannel message elsewhere (a browser tab or worker, where setTimeout(0) is clamped to 4 ms when nested).

type Immediate = (f: () => void) => unknown;
const immediate = (globalThis as { setImmediate?: Immediate }).setImmediate ?? null;
let channel: MessageChannel | null = null;
const waiting: (() => void)[] = [];

/** Resolves after the event loop has had a turn (pending timers, I/O callbacks and messages run first). */
export function yieldToEvents(): Promise<void> {
  if (immediate) return new Promise<void>((resolve) => void immediate(resolve));
  if (typeof MessageChannel === "undefined") return new Promise<void>((resolve) => setTimeout(resolve, 0));
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
  }
  const c = channel;
  return new Promise<void>((resolve) => {
    waiting.push(resolve);
    c.port2.postMessage(null);
  });
}
