// Errors a person can act on. A CharlmError carries one sentence naming the input, what was wrong and the fix;
// the CLI prints its message alone (no stack) and exits non-zero. Anything else reaching the top is a bug.

export class CharlmError extends Error {
  /** Process exit code the CLI uses: 2 bad usage (UsageError), 3 busy (BusyError), 1 everything else. */
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "CharlmError";
    this.exitCode = exitCode;
  }
}

/** Bad command-line usage: unknown flag, wrong type, out-of-range number. */
export class UsageError extends CharlmError {
  constructor(message: string) {
    super(message, 2);
    this.name = "UsageError";
  }
}

/** Another process holds what was asked for: a checkpoint directory being trained, a port in use. */
export class BusyError extends CharlmError {
  constructor(message: string) {
    super(message, 3);
    this.name = "BusyError";
  }
}

/**
 * The GPU device went away under a run (a driver reset, the GPU unplugged or taken by the system, a browser that
 * dropped its GPU process): every value on it is gone. `detail` is the device's own reason; the message says what to
 * do, and a training run adds where its last checkpoint is (src/train/loop.ts).
 */
export class DeviceLostError extends CharlmError {
  constructor(
    readonly detail: string,
    message = `backend webgpu: the GPU device was lost (${detail}) and what was on it with it; run the command ` +
      "again, or with --backend wasm on the CPU",
  ) {
    super(message);
    this.name = "DeviceLostError";
  }
}
