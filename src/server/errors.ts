// HTTP errors as JSON: `{ "error": one sentence naming the input, what is wrong and the fix, "code": short tag }`.
// Fastify's own errors (schema validation, body too large, bad JSON) are rewritten into the same shape.

import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { CharlmError, DeviceLostError } from "../util/errors.js";
import { BusyError } from "./gate.js";

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

export interface ErrorBody {
  error: string;
  code: string;
}

/** Turn an ajv validation error into a sentence that names the field. */
function validationMessage(err: FastifyError, allowed: (url: string) => string[] | undefined, url: string): string {
  const v = err.validation?.[0];
  if (!v) return err.message;
  const field = v.instancePath.replace(/^\//, "").replace(/\//g, ".") || "body";
  const where = err.validationContext === "body" ? "" : `${err.validationContext} `;
  switch (v.keyword) {
    case "additionalProperties": {
      const names = allowed(url);
      const extra = String((v.params as { additionalProperty?: string }).additionalProperty);
      return `unknown ${where}field '${extra}'${names ? `; allowed fields are ${names.join(", ")}` : ""}`;
    }
    case "required":
      return `missing required ${where}field '${String((v.params as { missingProperty?: string }).missingProperty)}'`;
    case "maxLength":
    case "minLength":
    case "maxItems":
    case "minItems":
      return `${where}${field} ${v.message ?? "is invalid"}; shorten or lengthen it to fit`;
    default:
      return `${where}${field} ${v.message ?? "is invalid"}`;
  }
}

export function makeErrorHandler(opts: {
  bodyLimit: number;
  allowedFields: (url: string) => string[] | undefined;
  /** Called with errors that are the server's fault (500), for the log. */
  onInternal?: (err: Error) => void;
}) {
  return (err: FastifyError | HttpError | BusyError | CharlmError, req: FastifyRequest, reply: FastifyReply): void => {
    let status = 500;
    let body: ErrorBody;
    if (err instanceof HttpError) {
      status = err.statusCode;
      body = { error: err.message, code: err.code };
    } else if (err instanceof BusyError) {
      status = 429;
      reply.header("retry-after", "2");
      body = { error: err.message, code: "busy" };
    } else if (err instanceof DeviceLostError) {
      // The server's GPU went away under the request; the model is loaded on a new device for the next one.
      status = 503;
      reply.header("retry-after", "1");
      body = { error: err.message, code: "device_lost" };
    } else if (err instanceof CharlmError) {
      // The library refused the request's values (the schema lets through only what the sampler should accept,
      // so this is a backstop): still the client's to fix.
      status = 400;
      body = { error: err.message, code: "invalid_request" };
    } else if ((err as FastifyError).validation) {
      status = 400;
      body = {
        error: validationMessage(err as FastifyError, opts.allowedFields, req.routeOptions.url ?? req.url),
        code: "invalid_request",
      };
    } else if ((err as FastifyError).code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      status = 413;
      body = {
        error: `request body is larger than the limit of ${opts.bodyLimit} bytes; send a shorter prime or fewer stop strings`,
        code: "body_too_large",
      };
    } else if ((err as FastifyError).code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      status = 415;
      body = {
        error: "request body must be JSON; send it with content-type: application/json",
        code: "unsupported_media_type",
      };
    } else if (
      (err as FastifyError).code === "FST_ERR_CTP_INVALID_JSON_BODY" ||
      (err as FastifyError).code === "FST_ERR_CTP_EMPTY_JSON_BODY"
    ) {
      status = 400;
      body = {
        error: `request body is not valid JSON (${err.message}); send a JSON object such as {"prime": "ROMEO:"}`,
        code: "invalid_request",
      };
    } else if ((err as FastifyError).code === "FST_ERR_BAD_URL") {
      status = 400;
      body = { error: `the URL ${req.url} does not decode (bad %-escape); fix the URL`, code: "invalid_request" };
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
      // Anything else Fastify refuses is still a bad request: the documented shape, not Fastify's own code.
      status = (err as FastifyError).statusCode!;
      body = { error: `${err.message}; check the request`, code: "invalid_request" };
    } else {
      opts.onInternal?.(err);
      body = { error: `internal error: ${err.message}`, code: "internal" };
    }
    void reply.status(status).type("application/json").send(body);
  };
}
