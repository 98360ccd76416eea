// A bound on concurrent generations. Each generation holds a model state and a socket for as long as it runs, so a
// burst of requests must not start all at once: at most `maxActive` run, up to `maxQueued` wait in arrival order,
// and the rest are refused at once (the server answers 429) instead of piling up in memory.

export class BusyError extends Error {
  constructor(
    readonly active: number,
    readonly queued: number,
  ) {
    super(`server busy: ${active} generations running and ${queued} waiting; retry in a few seconds`);
    this.name = "BusyError";
  }
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (err: unknown) => void;
}

export class Gate {
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    readonly maxActive: number,
    readonly maxQueued: number,
  ) {}

  get running(): number {
    return this.active;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Resolves with a release function once a slot is free. Throws BusyError when the queue is full, and rejects
   * with the signal's reason if it aborts while waiting (the waiter leaves the queue).
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.active < this.maxActive) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.length >= this.maxQueued) return Promise.reject(new BusyError(this.active, this.queue.length));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
        reject,
      };
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      // The slot passes straight to the next waiter, so `active` stays put and no newcomer can jump the queue.
      if (next) next.resolve(this.releaser());
      else this.active--;
    };
  }
}
