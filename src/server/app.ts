// The HTTP API and the page, on Fastify. Every request body and parameter has a JSON schema (unknown fields are
// errors, nothing is coerced), every error is a JSON sentence, and generation runs behind a gate that bounds how
// many run at once, with a time limit per request. Models are the ones handed in at start, looked up by name:
// no request can make the server read a path of its choosing.
//
//   GET  /healthz                         liveness and load
//   GET  /api/models                      model cards (without the loss history)
//   GET  /api/models/:name                one model's card, with its loss history
//   GET  /api/models/:name/manifest       charlm.json, for the in-browser mode
//   GET  /api/models/:name/weights        model.safetensors, for the in-browser mode
//   GET  /api/models/:name/loss.svg       the loss curve (the checkpoint's own picture when it has one)
//   POST /api/generate                    JSON in, JSON out
//   POST /api/generate/stream             JSON in, server-sent events out: one event per character
//   GET  /, /style.css, /dist/*, ...      the page from web/; /kernels.wasm (and -relaxed, -shared, -shared-relaxed)
//                                          from build/

import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { basename, extname, join, normalize, resolve, sep } from "node:path";
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance, type FastifyReply } from "fastify";
import { lossChartSvg } from "../util/chart.js";
import { CharlmError, DeviceLostError } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import { HttpError, makeErrorHandler } from "./errors.js";
import { Gate } from "./gate.js";
import type { GenerateRequest, ServedFile, ServedModel } from "./served-model.js";

export interface ServerOptions {
  /** Most characters one request may generate. */
  maxLength?: number;
  /** Most characters in a priming text. */
  maxPrime?: number;
  /** Largest request body in bytes (default: 16 KiB, or more when maxPrime needs it). */
  bodyLimit?: number;
  /** Generations running at once; more wait in the queue. */
  maxActive?: number;
  /** Generations waiting for a slot; beyond this the server answers 429. */
  maxQueued?: number;
  /** Wall-clock limit per generation request in milliseconds, queueing included. */
  timeLimitMs?: number;
  /** Seeds requests that give none; pass a seeded Rng for reproducible servers. */
  rng?: Rng;
  /** Folder of the page (default: web/ next to src/ or dist/). */
  webDir?: string;
  /** The engine's WebAssembly kernels for the in-browser mode (default: build/kernels.wasm). */
  wasmPath?: string;
  /** Print one line per request to stderr. */
  log?: boolean;
  /** Most milliseconds a client may take to send a whole request, headers and body (default 10 s). */
  requestTimeoutMs?: number;
  /** An origin (e.g. https://example.org) whose pages may call the API from a browser; none when absent. */
  cors?: string;
}

export const DEFAULTS = {
  maxLength: 2000,
  maxPrime: 2000,
  bodyLimit: 16 * 1024,
  maxActive: 4,
  maxQueued: 16,
  timeLimitMs: 30_000,
  requestTimeoutMs: 10_000,
} as const;

/** The longest delay a Node timer holds; longer ones fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Why a generation ended. */
export type FinishReason = "length" | "stop" | "time_limit" | "client_closed";

const here = fileURLToPath(new URL(".", import.meta.url));

// ---------------------------------------------------------------------------------------------------------------
// Schemas

const MODEL_NAME = { type: "string", minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9._-]+$" } as const;

function generateSchema(o: Required<Pick<ServerOptions, "maxLength" | "maxPrime">>) {
  return {
    type: "object",
    additionalProperties: false,
    properties: {
      model: MODEL_NAME,
      // An empty prime is allowed: the sampler then starts as if after a line break.
      prime: { type: "string", maxLength: o.maxPrime, default: "" },
      length: { type: "integer", minimum: 1, maximum: o.maxLength, default: Math.min(200, o.maxLength) },
      temperature: { type: "number", exclusiveMinimum: 0, maximum: 10, default: 1 },
      top_k: { type: "integer", minimum: 0, maximum: 1_000_000, default: 0 },
      top_p: { type: "number", exclusiveMinimum: 0, maximum: 1, default: 1 },
      seed: { type: "integer", minimum: 0, maximum: 4294967295 },
      // a GPT past its window: its oldest tokens dropped at once (unset: 1, the whole window for every token)
      window_stride: { type: "integer", minimum: 1, maximum: 1_000_000 },
      stop: {
        type: "array",
        maxItems: 8,
        items: { type: "string", minLength: 1, maxLength: 64 },
        default: [],
      },
    },
  } as const;
}

interface GenerateBody {
  model?: string;
  prime: string;
  length: number;
  temperature: number;
  top_k: number;
  top_p: number;
  seed?: number;
  window_stride?: number;
  stop: string[];
}

const GENERATE_FIELDS = Object.keys(generateSchema({ maxLength: 1, maxPrime: 1 }).properties);

const NAME_PARAMS = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: { name: MODEL_NAME },
} as const;

const STATIC_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".ico": "image/x-icon",
};

/** A corpus as the public sees it: the file's base name ("letters.txt"), "tinyshakespeare", or a list of them. */
function publicCorpusName(data: unknown): unknown {
  if (Array.isArray(data)) return data.map(publicCorpusName);
  if (typeof data !== "string") return data;
  return /^tinyshakespeare(:|$)/i.test(data) ? "tinyshakespeare" : basename(data);
}

/** Send a model's file with its length: streamed from disk, or the bytes a model from a tar holds. */
async function sendFile(reply: FastifyReply, file: ServedFile): Promise<FastifyReply> {
  if (typeof file !== "string") {
    return reply
      .header("content-length", file.bytes.length)
      .send(Buffer.from(file.bytes.buffer, file.bytes.byteOffset, file.bytes.length));
  }
  return reply.header("content-length", (await stat(file)).size).send(createReadStream(file));
}

// ---------------------------------------------------------------------------------------------------------------
// The server

export function createServer(models: ServedModel[], options: ServerOptions = {}): FastifyInstance {
  const o = { ...DEFAULTS, ...options };
  // A prime of maxPrime characters must fit: up to 6 bytes each once JSON-escaped ("\u0001"), plus the other fields.
  o.bodyLimit = options.bodyLimit ?? Math.max(DEFAULTS.bodyLimit, o.maxPrime * 6 + 4096);
  const rng = options.rng ?? new Rng(Date.now() >>> 0);
  const webDir = resolve(options.webDir ?? join(here, "../../web"));
  const wasmPath = resolve(options.wasmPath ?? join(here, "../../build/kernels.wasm"));
  const byName = new Map(models.map((m) => [m.card.name, m]));
  if (byName.size !== models.length) throw new Error("createServer: two models share a name");
  const gate = new Gate(o.maxActive, o.maxQueued);
  const logInternal = (err: Error) => {
    if (o.log) process.stderr.write(`internal error: ${err.stack ?? err.message}\n`);
  };

  for (const [what, ms] of [
    ["time limit", o.timeLimitMs],
    ["request time limit", o.requestTimeoutMs],
  ] as const) {
    if (!(ms > 0 && ms <= MAX_TIMER_MS)) {
      throw new CharlmError(`server ${what} of ${ms} ms: must be above 0 and at most ${MAX_TIMER_MS} ms (24.8 days)`);
    }
  }
  const handleError = makeErrorHandler({
    bodyLimit: o.bodyLimit,
    allowedFields: (url) => (url.startsWith("/api/generate") ? GENERATE_FIELDS : undefined),
    onInternal: logInternal,
  });

  const app = Fastify({
    // Node's own clock on slow clients: the whole request (a body dribbled a byte at a time included) must arrive
    // within requestTimeoutMs, checked every second (Node's default check is every 30 s).
    serverFactory: (handler) =>
      createHttpServer(
        {
          requestTimeout: o.requestTimeoutMs,
          headersTimeout: Math.min(o.requestTimeoutMs, 60_000),
          connectionsCheckingInterval: Math.min(1000, o.requestTimeoutMs),
        },
        handler,
      ),
    // Errors Fastify raises before any route runs (a URL that does not decode, say) take the same JSON shape.
    frameworkErrors: (err, req, reply) => handleError(err, req, reply),
    bodyLimit: o.bodyLimit,
    // Strict validation: no silent removal of unknown fields, no "12" -> 12 coercion.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    logger: false,
    // Closing the server ends open event streams too (their generations see the client go and stop).
    forceCloseConnections: true,
  });

  // JSON only: without this, Fastify would also parse text/plain bodies into strings.
  app.removeContentTypeParser("text/plain");
  app.setErrorHandler(handleError);
  if (o.cors) {
    const origin = o.cors;
    // Only the one origin the operator named; other origins get no CORS headers, so browsers keep them out.
    app.addHook("onRequest", async (req, reply) => {
      if (req.headers.origin !== origin) return;
      void reply.header("access-control-allow-origin", origin).header("vary", "origin");
    });
    app.options("/api/*", async (_req, reply) =>
      reply
        .status(204)
        .header("access-control-allow-methods", "GET, POST")
        .header("access-control-allow-headers", "content-type")
        .header("access-control-max-age", "600")
        .send(),
    );
  }
  app.setNotFoundHandler((req, reply) => {
    void reply
      .status(404)
      .send({ error: `no such endpoint: ${req.method} ${req.url.split("?")[0]}`, code: "not_found" });
  });
  if (o.log) {
    app.addHook("onResponse", async (req, reply) => {
      process.stderr.write(`${req.method} ${req.url} ${reply.statusCode} ${reply.elapsedTime.toFixed(0)}ms\n`);
    });
  }

  const lookup = (name: string | undefined): ServedModel => {
    if (name === undefined) {
      if (models.length === 1) return models[0];
      throw new HttpError(
        400,
        "model_required",
        `several models are served; name one in 'model': ${[...byName.keys()].join(", ")}`,
      );
    }
    const m = byName.get(name);
    if (!m)
      throw new HttpError(404, "unknown_model", `unknown model '${name}'; available: ${[...byName.keys()].join(", ")}`);
    return m;
  };

  // Checks that need the model (the schema has done the rest), then the sampler's view of the request.
  const prepare = (body: GenerateBody): { model: ServedModel; req: GenerateRequest } => {
    const model = lookup(body.model);
    const unknown = model.unknownChars(body.prime);
    if (unknown.length > 0) {
      const shown = unknown
        .slice(0, 10)
        .map((c) => JSON.stringify(c))
        .join(", ");
      throw new HttpError(
        400,
        "unknown_characters",
        `prime contains ${unknown.length} character${unknown.length > 1 ? "s" : ""} outside model '${model.card.name}''s vocabulary: ${shown}${unknown.length > 10 ? ", ..." : ""}; remove them or pick a model trained on them`,
      );
    }
    const stride = body.window_stride;
    if (stride !== undefined) {
      const { type, blockSize } = model.card.config;
      if (typeof blockSize !== "number") {
        throw new HttpError(
          400,
          "bad_window_stride",
          `window_stride applies to a GPT (a model with a fixed window); model '${model.card.name}' is ${String(type)}: leave it out`,
        );
      }
      if (stride > blockSize) {
        throw new HttpError(
          400,
          "bad_window_stride",
          `window_stride ${stride} does not fit model '${model.card.name}''s context of ${blockSize}; pass 1 to ${blockSize}`,
        );
      }
    }
    const seed = body.seed ?? rng.nextU32();
    return {
      model,
      req: {
        prime: body.prime,
        length: body.length,
        temperature: body.temperature,
        topK: body.top_k,
        topP: body.top_p,
        seed,
        stop: body.stop,
        ...(stride === undefined ? {} : { windowStride: stride }),
      },
    };
  };

  // A generation's lifetime: its time limit (queueing included) and the client going away both arrive as aborts.
  // The slot is taken before any reply is written, so a full queue is a plain 429 even for the streaming variant.
  const admit = async (reply: FastifyReply) => {
    const closed = closedSignal(reply);
    const timeout = AbortSignal.timeout(o.timeLimitMs);
    const signal = AbortSignal.any([timeout, closed]);
    const release = await gate.acquire(signal).catch((err: unknown) => {
      if (closed.aborted) throw new HttpError(499, "client_closed", "the client left while waiting in the queue");
      if (timeout.aborted) {
        throw new HttpError(503, "busy", `waited ${o.timeLimitMs / 1000}s for a free generation slot; retry later`);
      }
      throw err;
    });
    return { closed, timeout, signal, release };
  };

  // Runs one admitted generation to its end, handing each character to `emit`, and frees the slot. Leaving the
  // for-await loop calls the generator's return(), so the model's work stops there.
  const run = async (
    model: ServedModel,
    req: GenerateRequest,
    slot: Awaited<ReturnType<typeof admit>>,
    emit: (text: string) => void | Promise<void>,
  ): Promise<{ reason: FinishReason; chars: number; seconds: number }> => {
    const { closed, timeout, signal, release } = slot;
    const t0 = performance.now();
    let chars = 0;
    let stopped = false; // a stop string ended the text (a word or bpe token is several characters, so counting
    // characters against the token length cannot tell)
    try {
      for await (const piece of model.generate(req, signal, () => void (stopped = true))) {
        if (signal.aborted) break;
        chars += Array.from(piece).length;
        await emit(piece);
        // Give sockets, timers and the other generations a turn between characters.
        await yieldToLoop();
        if (signal.aborted) break;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      release();
    }
    const reason: FinishReason = closed.aborted
      ? "client_closed"
      : timeout.aborted
        ? "time_limit"
        : stopped
          ? "stop"
          : "length";
    return { reason, chars, seconds: Math.round(performance.now() - t0) / 1000 };
  };

  /** An AbortSignal that fires when the client's connection closes before the reply has been sent. */
  const closedSignal = (reply: FastifyReply): AbortSignal => {
    const ctrl = new AbortController();
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) ctrl.abort(new Error("client closed the connection"));
    });
    return ctrl.signal;
  };

  // ---- API

  app.get("/healthz", async () => ({
    status: "ok",
    models: models.length,
    generations: { running: gate.running, waiting: gate.waiting, maxActive: o.maxActive, maxQueued: o.maxQueued },
  }));

  app.get("/api/models", async () => ({
    models: models.map((m) => {
      const { history: _history, ...card } = m.card;
      return { ...card, inBrowser: m.files !== undefined };
    }),
    limits: { maxLength: o.maxLength, maxPrime: o.maxPrime, timeLimitSeconds: o.timeLimitMs / 1000 },
  }));

  app.get<{ Params: { name: string } }>("/api/models/:name", { schema: { params: NAME_PARAMS } }, async (req) => {
    const m = lookup(req.params.name);
    return { ...m.card, inBrowser: m.files !== undefined };
  });

  const sendModelFile = async (reply: FastifyReply, name: string, which: "weights" | "manifest") => {
    const m = lookup(name);
    if (!m.files)
      throw new HttpError(
        404,
        "no_files",
        `model '${name}' has no files on disk to download; use the server-side mode`,
      );
    const file = m.files[which];
    if (which === "manifest") {
      // The corpus path is the server's business: show its base name, as the model cards do.
      const text = typeof file === "string" ? await readFile(file, "utf8") : new TextDecoder().decode(file.bytes);
      const manifest = JSON.parse(text) as { train?: { data?: unknown } };
      if (manifest.train?.data !== undefined) manifest.train.data = publicCorpusName(manifest.train.data);
      return reply.type("application/json").header("cache-control", "no-cache").send(manifest);
    }
    return sendFile(reply.type("application/octet-stream").header("cache-control", "no-cache"), file);
  };
  app.get<{ Params: { name: string } }>(
    "/api/models/:name/weights",
    { schema: { params: NAME_PARAMS } },
    (req, reply) => sendModelFile(reply, req.params.name, "weights"),
  );
  app.get<{ Params: { name: string } }>(
    "/api/models/:name/manifest",
    { schema: { params: NAME_PARAMS } },
    (req, reply) => sendModelFile(reply, req.params.name, "manifest"),
  );
  app.get<{ Params: { name: string } }>(
    "/api/models/:name/loss.svg",
    { schema: { params: NAME_PARAMS } },
    async (req, reply) => {
      const m = lookup(req.params.name);
      const picture = m.files?.lossPicture;
      if (picture) {
        const type = STATIC_TYPES[extname(typeof picture === "string" ? picture : picture.name)];
        return sendFile(reply.type(type ?? "application/octet-stream"), picture);
      }
      return reply.type("image/svg+xml").send(lossChartSvg(m.card.history, m.card.name, m.card.tokenizer));
    },
  );

  const generateRoute = { schema: { body: generateSchema(o) } };
  for (const url of ["/api/generate", "/api/generate/stream"]) {
    app.route({
      method: ["GET", "HEAD", "PUT", "DELETE", "PATCH"],
      url,
      handler: async (req, reply) => {
        void reply.header("allow", "POST");
        throw new HttpError(405, "method_not_allowed", `${url} takes POST with a JSON body, not ${req.method}`);
      },
    });
  }

  app.post<{ Body: GenerateBody }>("/api/generate", generateRoute, async (request, reply) => {
    const { model, req } = prepare(request.body);
    const slot = await admit(reply);
    let text = "";
    const result = await run(model, req, slot, (piece) => {
      text += piece;
    });
    return { model: model.card.name, prime: req.prime, text, seed: req.seed, ...result };
  });

  app.post<{ Body: GenerateBody }>("/api/generate/stream", generateRoute, async (request, reply) => {
    const { model, req } = prepare(request.body);
    const slot = await admit(reply);
    // From here on we write the event stream ourselves; errors after this point become `event: error`.
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const send = async (event: string | null, data: unknown) => {
      if (res.destroyed) return;
      const ok = res.write(`${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(data)}\n\n`);
      // Respect backpressure: a slow reader pauses its own generation, not the server's memory.
      if (!ok && !res.destroyed) {
        await new Promise<void>((done) => {
          const finish = () => {
            res.off("drain", finish);
            res.off("close", finish);
            done();
          };
          res.on("drain", finish);
          res.on("close", finish);
        });
      }
    };
    await send("start", { model: model.card.name, seed: req.seed });
    try {
      const result = await run(model, req, slot, (text) => send(null, { text }));
      await send("done", result);
    } catch (err) {
      // Headers are gone; the error travels as an event. CharlmErrors (bad options the sampler caught) are the
      // client's fault and say so in their message; anything else is ours.
      const message = err instanceof Error ? err.message : String(err);
      if (!(err instanceof HttpError || err instanceof CharlmError)) logInternal(err as Error);
      const code =
        err instanceof HttpError
          ? err.code
          : err instanceof DeviceLostError
            ? "device_lost"
            : err instanceof CharlmError
              ? "invalid_request"
              : "internal";
      await send("error", { error: message, code });
    }
    res.end();
    if (o.log) process.stderr.write(`POST /api/generate/stream (sse) ${model.card.name} done\n`);
  });

  // ---- The page and the kernels it runs in the browser

  // The page's own files and the kernels come with the two headers that make the page cross-origin isolated, so
  // that its training worker gets SharedArrayBuffer and runs the wasm kernels on several threads. Everything the
  // page loads is from this server, so nothing else is affected.
  app.addHook("onSend", async (req, reply) => {
    if (req.method !== "GET" || req.url.startsWith("/api/")) return;
    void reply
      .header("cross-origin-opener-policy", "same-origin")
      .header("cross-origin-embedder-policy", "require-corp");
  });

  // build/kernels.wasm, and the builds beside it (relaxed SIMD, and shared memory for threads: src/browser.ts).
  for (const tail of ["", "-relaxed", "-shared", "-shared-relaxed"]) {
    const path = wasmPath.replace(/\.wasm$/, `${tail}.wasm`);
    app.get(`/kernels${tail}.wasm`, async (_req, reply) => {
      const size = await stat(path).then(
        (s) => s.size,
        () => -1,
      );
      if (size < 0) {
        throw new HttpError(
          404,
          "no_wasm",
          `build/kernels${tail}.wasm is missing on the server; run 'npm run build' there`,
        );
      }
      return reply.type("application/wasm").header("content-length", size).send(createReadStream(path));
    });
  }

  app.get("/*", async (req, reply) => {
    const url = req.url.split("?")[0];
    if (url.startsWith("/api/")) throw new HttpError(404, "not_found", `no such endpoint: GET ${url}`);
    const rel = url === "/" ? "index.html" : decodeURIComponent(url).replace(/^\/+/, "");
    const path = normalize(join(webDir, rel));
    const type = STATIC_TYPES[extname(path)];
    // Only plain files of known types inside web/, never dot-files or anything reached through "..".
    if (!path.startsWith(webDir + sep) || !type || rel.split("/").some((p) => p.startsWith("."))) {
      throw new HttpError(404, "not_found", `no such page: ${url}`);
    }
    const info = await stat(path).catch(() => null);
    if (!info?.isFile()) {
      const hint = rel.startsWith("dist/") ? "; build the page with 'npm run build'" : "";
      throw new HttpError(404, "not_found", `no such page: ${url}${hint}`);
    }
    return reply
      .type(type)
      .header("content-length", info.size)
      .header("cache-control", "no-cache")
      .send(createReadStream(path));
  });

  return app;
}
