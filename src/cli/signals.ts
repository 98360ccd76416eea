// Ctrl-C (SIGINT) and a supervisor's stop (SIGTERM) ask a training command to save and stop; a second signal quits
// at once. The exit code then says which signal it was: 128 + its number, as shells report it (130, 143).

export interface StopSignals {
  signal: AbortSignal;
  /** 0 when no signal came, else 130 (SIGINT) or 143 (SIGTERM). */
  exitCode(): number;
  dispose(): void;
}

const CODES = { SIGINT: 130, SIGTERM: 143 } as const;

/** Listen for SIGINT and SIGTERM until dispose(); `saving` names what the command does before it stops. */
export function stopOnSignals(saving: string): StopSignals {
  const abort = new AbortController();
  let received: keyof typeof CODES | null = null;
  const on = (sig: keyof typeof CODES): void => {
    if (abort.signal.aborted) process.exit(CODES[sig]);
    received = sig;
    const again = sig === "SIGTERM" ? "send SIGTERM again" : "press Ctrl-C again";
    process.stderr.write(
      `\n${sig === "SIGTERM" ? "terminated" : "interrupted"}: ${saving} (${again} to quit at once)\n`,
    );
    abort.abort();
  };
  const onInt = () => on("SIGINT");
  const onTerm = () => on("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return {
    signal: abort.signal,
    exitCode: () => (received ? CODES[received] : 0),
    dispose() {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    },
  };
}
