// Progress on long work: a redrawn bar with rate and ETA on a terminal, plain lines every few seconds otherwise
// (so CI logs and `| tee` stay readable).

/** A text sink with an optional terminal flag: process.stderr, or anything with write(). */
export interface TextStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Total units of work (steps, bytes, characters). */
  total: number;
  /** Label in front of the bar. */
  label?: string;
  /** Unit name for the rate, e.g. "char" gives "char/s". */
  unit?: string;
  /** Where to write; default process.stderr. */
  stream?: TextStream;
  /** Seconds between plain lines when the stream is not a terminal. */
  plainInterval?: number;
  /** Rate is measured in these units per tick (e.g. characters per step); default 1. */
  unitsPerTick?: number;
  /** Silence all output (tests). */
  quiet?: boolean;
}

export class Progress {
  private done = 0;
  private readonly start = performance.now();
  private lastDraw = 0;
  private lastPlain = 0;
  private readonly stream: NonNullable<ProgressOptions["stream"]>;
  private readonly tty: boolean;
  private extra = "";

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
  }

  /** Advance by n and set the free-text status (e.g. "loss 1.734"). */
  tick(n = 1, status?: string): void {
    this.done += n;
    if (status !== undefined) this.extra = status;
    const now = performance.now();
    if (this.opts.quiet) return;
    if (this.tty) {
      if (now - this.lastDraw > 100 || this.done >= this.opts.total) {
        this.lastDraw = now;
        this.stream.write("\r" + this.line(now) + "\x1b[K");
      }
    } else if (now - this.lastPlain > (this.opts.plainInterval ?? 10) * 1000) {
      this.lastPlain = now;
      this.stream.write(this.line(now) + "\n");
    }
  }

  /** Finish the bar (newline on a terminal, one closing line otherwise). */
  finish(status?: string): void {
    if (status !== undefined) this.extra = status;
    if (this.opts.quiet) return;
    const line = this.line(performance.now());
    this.stream.write(this.tty ? "\r" + line + "\x1b[K\n" : line + "\n");
  }

  /** Units per second so far. */
  rate(): number {
    const secs = (performance.now() - this.start) / 1000;
    return secs > 0 ? (this.done * (this.opts.unitsPerTick ?? 1)) / secs : 0;
  }

  private line(now: number): string {
    const { total, label = "" } = this.opts;
    const frac = total > 0 ? Math.min(1, this.done / total) : 1;
    const secs = (now - this.start) / 1000;
    const eta = frac > 0 && frac < 1 ? (secs / frac) * (1 - frac) : 0;
    const width = 24;
    const filled = Math.round(frac * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const rate = `${formatCount(this.rate())} ${this.opts.unit ?? "it"}/s`;
    const parts = [label, `${bar} ${(frac * 100).toFixed(0).padStart(3)}%`, `${this.done}/${total}`, rate];
    parts.push(frac < 1 ? `ETA ${formatDuration(eta)}` : `${formatDuration(secs)}`);
    if (this.extra) parts.push(this.extra);
    return parts.filter(Boolean).join("  ");
  }
}

export function formatDuration(secs: number): string {
  if (!Number.isFinite(secs)) return "?";
  const s = Math.round(secs);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

export function formatCount(x: number): string {
  if (x >= 1e6) return (x / 1e6).toFixed(2) + "M";
  if (x >= 1e4) return (x / 1e3).toFixed(1) + "k";
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}
