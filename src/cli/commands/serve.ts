// `charlm serve`: load the checkpoints (directories or tars of them) named on the command line and serve the HTTP
// API and the page.

import { BusyError, UsageError } from "../../util/errors.js";
import { Rng } from "../../util/rng.js";
import { createServer, DEFAULTS } from "../../server/app.js";
import { loadServedModels } from "../../server/checkpoint-model.js";
import { backendFlag, selectBackend, threadsFlag } from "../backend.js";
import { CHECKPOINT_HELP, KERNEL_ENV, defineCommand } from "../command.js";

export const serveCommand = defineCommand({
  name: "serve",
  environment: KERNEL_ENV,
  summary: "serve trained models over HTTP: a JSON API, a streaming API and a web page",
  schema: {
    model: {
      type: "strings",
      help: `model to serve: a ${CHECKPOINT_HELP}; NAME=DIR names it; repeat for several`,
      arg: "DIR",
    },
    port: { type: "int", help: "TCP port (0 picks a free one)", default: 8080, min: 0, max: 65535 },
    host: { type: "string", help: "address to bind; 0.0.0.0 exposes the server to the network", default: "127.0.0.1" },
    maxLength: { type: "int", help: "most characters one request may generate", default: DEFAULTS.maxLength, min: 1 },
    maxPrime: { type: "int", help: "most characters in a priming text", default: DEFAULTS.maxPrime, min: 1 },
    concurrency: { type: "int", help: "generations running at once", default: DEFAULTS.maxActive, min: 1 },
    queue: { type: "int", help: "generations waiting for a slot before 429", default: DEFAULTS.maxQueued, min: 0 },
    timeout: {
      type: "float",
      help: "seconds one generation request may take, queueing included",
      default: DEFAULTS.timeLimitMs / 1000,
      above: 0,
      max: 86_400, // a day; a Node timer cannot hold much more than 24 days, and no generation needs one
    },
    cors: {
      type: "string",
      help: "let pages from this origin (e.g. https://example.org) call the API from a browser",
      arg: "ORIGIN",
    },
    backend: backendFlag,
    threads: threadsFlag,
    seed: { type: "int", help: "seed for the seeds of requests that give none (default: the clock)", min: 0 },
    quiet: { type: "bool", help: "do not log requests", default: false },
  },
  examples: [
    "charlm serve --model runs/shakespeare",
    "charlm serve --model lstm=runs/shakespeare --model gru=runs/gru --port 3000",
  ],
  async run(flags) {
    if (!flags.model?.length) throw new UsageError(`serve needs at least one --model DIR, a ${CHECKPOINT_HELP}`);
    if (flags.cors !== undefined && !isOrigin(flags.cors)) {
      throw new UsageError(
        `--cors ${flags.cors}: not an origin; give scheme, host and port only, like https://example.org or http://localhost:3000`,
      );
    }
    const backend = await selectBackend(flags.backend, flags.threads);
    const models = await loadServedModels(flags.model);
    const app = createServer(models, {
      maxLength: flags.maxLength,
      maxPrime: flags.maxPrime,
      maxActive: flags.concurrency,
      maxQueued: flags.queue,
      timeLimitMs: flags.timeout * 1000,
      rng: new Rng(flags.seed ?? Date.now() >>> 0),
      log: !flags.quiet,
      cors: flags.cors,
    });
    let address: string;
    try {
      address = await app.listen({ port: flags.port, host: flags.host });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE") {
        throw new BusyError(`port ${flags.port} on ${flags.host} is in use; pick another with --port`);
      }
      if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND") {
        throw new UsageError(`cannot bind --host ${flags.host}: no such local address; use 127.0.0.1 or 0.0.0.0`);
      }
      throw err;
    }
    for (const m of models) {
      const loss = m.card.validationLoss === null ? "" : `, validation loss ${m.card.validationLoss.toFixed(3)}`;
      process.stderr.write(
        `model ${m.card.name}: ${m.card.type}, ${m.card.parameters.toLocaleString("en-US")} parameters${loss}\n`,
      );
    }
    process.stderr.write(`serving on ${address} (${backend.line}; Ctrl-C stops)\n`);
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    process.stderr.write("stopping\n");
    await app.close();
    return 0;
  },
});

function isOrigin(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === "http:" || url.protocol === "https:") && url.origin === text;
  } catch {
    return false;
  }
}
