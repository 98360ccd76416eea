// The bad-input sweep: `npm run bench -- bad_inputs [--verbose]` throws a long list of bad inputs at charlm (flags,
// files, damaged checkpoints, hostile HTTP requests) and counts those it handles the way the project promises:
//   CLI   one line on stderr naming the problem, no stack trace, the exit code of its kind (1 input, 2 usage, 3 busy),
//         within 20 s;
//   HTTP  a 4xx status with a JSON body of exactly {error, code}, the error one line.
// Everything runs in this process through main() (as the CLI tests do) and against a server on port 0, so the
// whole sweep takes well under a minute. It exits 1 if any input was mishandled, listing each.

import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TRAIN_FIELDS } from "../src/train/config.js";
import { kebab } from "../src/cli/flags.js";
import { createServer } from "../src/server/app.js";
import { fromCheckpoint } from "../src/server/checkpoint-model.js";
import { Rng } from "../src/util/rng.js";
import { cli } from "../test/helpers/cli.js";

interface CliCase {
  args: string[];
  code: number; // the exit code of its kind
}

interface Outcome {
  what: string;
  ok: boolean;
  why?: string;
}

const VERSE = "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n";
const TINY = ["--preset", "tiny", "--embedding", "8", "--units", "12", "--seq-length", "16", "--batch-size", "4"];

export async function main(args: string[]): Promise<void> {
  const verbose = args.includes("--verbose");
  const work = mkdtempSync(join(tmpdir(), "charlm-bad-"));
  try {
    const files = makeFiles(work);
    const good = join(work, "good");
    const made = await cli(
      "train",
      "--data",
      files.corpus,
      ...TINY,
      "--steps-per-epoch",
      "2",
      "--epochs",
      "1",
      "--out",
      good,
      "--quiet",
      "--sample-length",
      "0",
    );
    if (made.code !== 0) throw new Error(`could not train the reference checkpoint: ${made.err}`);
    const outcomes: Outcome[] = [];
    for (const c of cliCases(work, files, good)) outcomes.push(await runCli(c));
    outcomes.push(...(await httpCases(good)));
    const bad = outcomes.filter((o) => !o.ok);
    for (const o of verbose ? outcomes : bad)
      console.log(`${o.ok ? "ok  " : "BAD "} ${o.what}${o.why ? `: ${o.why}` : ""}`);
    const cliCount = outcomes.length - HTTP_COUNT.n;
    console.log(
      `bad inputs handled: ${outcomes.length - bad.length} of ${outcomes.length} (CLI ${cliCount}, HTTP ${HTTP_COUNT.n})`,
    );
    if (bad.length) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Files

function makeFiles(work: string) {
  const corpus = join(work, "verse.txt");
  writeFileSync(corpus, VERSE.repeat(30));
  const f = (name: string, data: string | Uint8Array) => {
    const p = join(work, name);
    writeFileSync(p, data);
    return p;
  };
  const emptyDir = join(work, "empty-dir");
  mkdirSync(emptyDir);
  mkdirSync(join(work, "no-txt"));
  writeFileSync(join(work, "no-txt", "a.md"), "not text for us");
  return {
    corpus,
    emptyDir,
    noTxt: join(work, "no-txt"),
    empty: f("empty.txt", ""),
    latin1: f("latin1.txt", Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])),
    binary: f("binary.txt", Buffer.from([0xff, 0xfe, 0x00, 0x81, 0xc0, 0x80])),
    notJson: f("not-json.json", "{ units: 512 "),
    unknownKey: f("unknown-key.json", JSON.stringify({ unitz: 3 })),
    wrongType: f("wrong-type.json", JSON.stringify({ units: "many" })),
    array: f("array.json", "[1, 2]"),
    nullJson: f("null.json", "null"),
    outOfRange: f("range.json", JSON.stringify({ dropout: 2 })),
    hugeConfig: f("huge.json", JSON.stringify({ units: 100000 })),
    badChoice: f("choice.json", JSON.stringify({ cell: "transformer" })),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Command-line cases

function cliCases(work: string, files: ReturnType<typeof makeFiles>, good: string): CliCase[] {
  const cases: CliCase[] = [];
  const usage = (...args: string[]) => cases.push({ args, code: 2 });
  const input = (...args: string[]) => cases.push({ args, code: 1 });
  const out = (name: string) => join(work, "out-" + name);

  // Every training field: a value of the wrong type, and values just outside its range or choices.
  for (const [key, spec] of Object.entries(TRAIN_FIELDS)) {
    const flag = `--${kebab(key)}`;
    if (spec.type === "int" || spec.type === "float") {
      usage("train", flag, "abc", "--out", out(key));
      usage("train", flag, "NaN", "--out", out(key));
      if (spec.type === "int") usage("train", flag, "1.5", "--out", out(key));
      if (spec.min !== undefined) usage("train", flag, String(spec.min - 1), "--out", out(key));
      if (spec.above !== undefined) usage("train", flag, String(spec.above), "--out", out(key));
      if (spec.max !== undefined) usage("train", flag, String(spec.max + 1), "--out", out(key));
    } else if (spec.type === "bool") {
      usage("train", `${flag}=maybe`, "--out", out(key));
    } else if (spec.choices) {
      usage("train", flag, "bogus", "--out", out(key));
    }
    if (spec.type !== "bool") usage("train", flag); // value missing
    if (spec.type !== "bool" && spec.type !== "strings") usage("train", flag, "1", flag, "2", "--out", out(key));
  }
  // The command line itself.
  usage("train", "extra-arg");
  usage("train", "-u", "32");
  usage("train", "--unitz", "3");
  usage("train", "--units");
  usage("bogus-command");
  usage("help", "bogus-command");
  usage("train", "--preset", "huge");
  usage("train", "--resume", good, "--out", out("elsewhere"));
  usage("train", "--resume", good, "--units", "64");
  usage("train", "--resume", good, "--cell", "gru");
  usage("train", "--data", files.corpus, "--out", good); // holds a checkpoint, no --force
  usage("train", "--units", "100000", "--out", out("big"));
  usage("train", "--units", "1e12", "--out", out("big"));
  usage("train", "--embedding", "1e9", "--out", out("big"));
  usage("train", "--layers", "16", "--units", "40000", "--out", out("big"));
  usage("train", "--type", "gpt", "--embedding", "100000", "--out", out("big"));
  usage("summary", "--units", "100000");
  usage("summary", "--bogus");
  // The learning-rate range test: its own flags, and train's config and data.
  usage("lr-find", "--lr", "0.1");
  usage("lr-find", "--min-lr", "0");
  usage("lr-find", "--min-lr", "0.1", "--max-lr", "0.01");
  usage("lr-find", "--steps", "5");
  usage("lr-find", "--max-lr", "abc");
  usage("lr-find", "--units", "100000");
  input("lr-find", "--data", join(work, "missing.txt"));
  input("lr-find", "--config", files.notJson);
  input("lr-find", "--data", files.corpus, "--plot", join(work, "no-such-dir", "lr.svg"), "--steps", "10");
  // Files given to train.
  input("train", "--data", join(work, "missing.txt"), "--out", out("d1"));
  input("train", "--data", files.emptyDir, "--out", out("d2"));
  input("train", "--data", files.noTxt, "--out", out("d3"));
  input("train", "--data", files.empty, "--out", out("d4"));
  input("train", "--data", files.latin1, "--out", out("d5"));
  input("train", "--data", files.binary, "--out", out("d6"));
  input("train", "--data", "/dev/zero", "--out", out("d7"));
  input("train", "--data", "/dev/null", "--out", out("d8"));
  input("train", "--data", files.corpus, "--data", join(work, "missing.txt"), "--out", out("d9"));
  input("train", "--data", "tinyshakespeare:", "--out", out("d10"));
  input("train", "--data", `tinyshakespeare:${join(work, "missing.txt")}`, "--out", out("d11"));
  for (const cfg of [files.notJson, files.unknownKey, files.wrongType, files.array, files.nullJson]) {
    input("train", "--config", cfg, "--out", out("c"));
  }
  input("train", "--config", files.outOfRange, "--out", out("c"));
  input("train", "--config", files.badChoice, "--out", out("c"));
  input("train", "--config", join(work, "missing.json"), "--out", out("c"));
  cases.push({ args: ["train", "--config", files.hugeConfig, "--out", out("c")], code: 2 });
  input("train", "--data", files.corpus, "--out", files.corpus);
  input("train", "--data", files.corpus, "--out", join(files.corpus, "sub"));
  input("train", "--data", files.corpus, "--out", "/dev/null");
  input("train", "--data", files.corpus, "--out", "/proc/x");
  input("train", "--resume", join(work, "missing-run"));
  input("train", "--resume", files.emptyDir);
  // A directory another live process has locked: busy.
  const locked = join(work, "locked");
  mkdirSync(locked);
  writeFileSync(join(locked, "charlm.lock"), JSON.stringify({ pid: process.ppid }));
  cases.push({ args: ["train", "--data", files.corpus, "--out", locked], code: 3 });

  // Sampling, evaluation and serving flags.
  usage("sample");
  const sampleFlags = [
    ["--temperature", "0"],
    ["--temperature", "-1"],
    ["--top-p", "0"],
    ["--top-p", "1.5"],
    ["--top-k", "-1"],
    ["--length", "-1"],
    ["--seed", "-1"],
    ["--seed", "4294967296"],
    ["--num-samples", "0"],
    ["--backend", "cuda"],
  ];
  for (const [flag, value] of sampleFlags) usage("sample", "--model", good, flag, value);
  usage("sample", "--model", good, "stray");
  input("sample", "--model", good, "--prime", "Zebra");
  input("sample", "--model", good, "--stop", "Zzz", "--prime", "€");
  usage("eval");
  usage("eval", "--model", good, "--split", "dev");
  usage("eval", "--model", good, "--seq-length", "0");
  input("eval", "--model", good, "--split", "test");
  input("eval", "--model", good, "--data", join(work, "missing.txt"));
  usage("serve");
  const serveFlags = [
    ["--port", "70000"],
    ["--port", "-1"],
    ["--timeout", "0"],
    ["--timeout", "2200000"],
    ["--concurrency", "0"],
    ["--cors", "example.org"],
    ["--cors", "https://example.org/path"],
  ];
  for (const [flag, value] of serveFlags) usage("serve", "--model", good, flag, value);
  usage("serve", "--model", `a=${good}`, "--model", `a=${good}`);
  input("serve", "--model", "bad name!=" + good); // not NAME=DIR, so a directory of that name, which is missing
  usage("scratch", "--hidden", "0");
  usage("scratch", "sample");
  usage("scratch", "bogus-mode");
  input("scratch", "sample", "--model", files.emptyDir);
  input("ls", join(work, "missing-runs"));
  input("ls", files.corpus);
  usage("ls", work, work);

  // Damaged checkpoints, each read by every command that reads one. A damaged training config is read (and
  // refused) only where a run resumes or starts from the checkpoint: commands that sample need the model and the
  // vocabulary alone (src/checkpoint/checkpoint.ts), and serve it.
  for (const [label, damage] of damages(good)) {
    const dir = join(work, "damaged-" + label);
    cpSync(good, dir, { recursive: true });
    damage(dir);
    const readers = label === "train-config" ? [] : ["sample", "eval", "summary", "serve"];
    for (const cmd of readers) input(cmd, "--model", dir);
    input("train", "--resume", dir);
    const tuned = out("init-from-" + label);
    input(
      "train",
      "--init-from",
      dir,
      "--data",
      files.corpus,
      "--epochs",
      "1",
      "--steps-per-epoch",
      "1",
      "--out",
      tuned,
    );
  }
  return cases;
}

/** Ways to damage a copy of a good checkpoint. */
function damages(good: string): [string, (dir: string) => void][] {
  const manifest = JSON.parse(readFileSync(join(good, "charlm.json"), "utf8")) as Record<string, unknown>;
  const patch = (over: Record<string, unknown>) => (dir: string) =>
    writeFileSync(join(dir, "charlm.json"), JSON.stringify({ ...manifest, ...over }));
  const model = manifest.model as Record<string, unknown>;
  return [
    ["no-manifest", (dir) => rmSync(join(dir, "charlm.json"))],
    ["not-json", (dir) => writeFileSync(join(dir, "charlm.json"), "{ nope")],
    ["empty-json", (dir) => writeFileSync(join(dir, "charlm.json"), "")],
    ["array", (dir) => writeFileSync(join(dir, "charlm.json"), "[]")],
    ["format", patch({ format: "keras" })],
    ["version", patch({ version: 3 })],
    ["no-model", patch({ model: null })],
    ["units-string", patch({ model: { ...model, units: "ten" } })],
    ["units-huge", patch({ model: { ...model, units: 100000 } })],
    ["cell", patch({ model: { ...model, cell: "transformer" } })],
    ["vocab-size", patch({ model: { ...model, vocabSize: 3 } })],
    ["vocab", patch({ tokenizer: { kind: "char", chars: "abc" } })],
    ["tokenizer-kind", patch({ tokenizer: { kind: "sentencepiece" } })],
    ["bpe-merges", patch({ tokenizer: { kind: "bpe", merges: [1, 9000] } })],
    ["history", patch({ history: "lots" })],
    ["history-entry", patch({ history: [{ epoch: 1, step: 2, trainLoss: "a" }] })],
    ["best", patch({ bestValLoss: "low" })],
    ["optimizer-t", patch({ optimizer: { type: "adam", t: -1, hyper: {} } })],
    ["step", patch({ step: "3" })],
    ["step-in-epoch", patch({ stepInEpoch: -2 })],
    ["rng", patch({ rng: { model: [1, 2], data: [1, 2, 3, 4] } })],
    ["status", patch({ status: "done" })],
    ["files", patch({ files: null })],
    ["train-config", patch({ train: { units: "many" } })],
    ["weights-missing", (dir) => rmSync(join(dir, "model.safetensors"))],
    [
      "weights-truncated",
      (dir) =>
        writeFileSync(join(dir, "model.safetensors"), readFileSync(join(dir, "model.safetensors")).subarray(0, 100)),
    ],
    [
      "weights-edited",
      (dir) => {
        const b = readFileSync(join(dir, "model.safetensors"));
        b[b.length - 1] ^= 0x40;
        writeFileSync(join(dir, "model.safetensors"), b);
      },
    ],
    ["weights-empty", (dir) => writeFileSync(join(dir, "model.safetensors"), "")],
    [
      "next-manifest-junk",
      (dir) => {
        writeFileSync(join(dir, "charlm.json.next"), "{}");
        rmSync(join(dir, "model.safetensors"));
      },
    ],
  ];
}

async function runCli(c: CliCase): Promise<Outcome> {
  const what = `charlm ${c.args.join(" ")}`;
  let timer: NodeJS.Timeout | undefined;
  const run = cli(...c.args);
  try {
    const r = await Promise.race([
      run,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer within 20 s")), 20_000);
      }),
    ]);
    const lines = r.err
      .trimEnd()
      .split("\n")
      .filter((l) => !l.startsWith("note: "));
    if (r.code !== c.code) return { what, ok: false, why: `exit ${r.code}, expected ${c.code}: ${r.err.trim()}` };
    if (lines.length !== 1) return { what, ok: false, why: `${lines.length} lines on stderr: ${r.err.trim()}` };
    if (/^\s+at /m.test(r.err)) return { what, ok: false, why: "stack trace" };
    return { what, ok: true, why: lines[0] };
  } catch (err) {
    // A command still at work (a server that came up, a run training) runs in this process: Ctrl-C stops it, so
    // that its capture of stdout and stderr ends and the sweep goes on.
    if ((err as Error).message.startsWith("no answer")) {
      process.emit("SIGINT");
      await run.catch(() => undefined);
    }
    return { what, ok: false, why: `threw: ${(err as Error).stack?.split("\n").slice(0, 2).join(" ")}` };
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP cases

const HTTP_COUNT = { n: 0 };

async function httpCases(good: string): Promise<Outcome[]> {
  const app = createServer([await fromCheckpoint(good, "tiny"), await fromCheckpoint(good, "other")], {
    rng: new Rng(1),
    maxLength: 100,
    requestTimeoutMs: 1000,
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const port = (app.server.address() as { port: number }).port;
  const json = "application/json";
  const gen = (body: unknown) => ({ method: "POST", path: "/api/generate", type: json, body: JSON.stringify(body) });
  const raw = (method: string, path: string, body?: string, type = json) => ({ method, path, type, body });
  const cases = [
    ...[
      { model: "tiny", length: 0 },
      { model: "tiny", length: 101 },
      { model: "tiny", length: "12" },
      { model: "tiny", length: 1.5 },
      { model: "tiny", temperature: 0 },
      { model: "tiny", temperature: -1 },
      { model: "tiny", temperature: 11 },
      { model: "tiny", temperature: "hot" },
      { model: "tiny", top_p: 0 },
      { model: "tiny", top_p: 2 },
      { model: "tiny", top_k: -1 },
      { model: "tiny", seed: -1 },
      { model: "tiny", seed: 2 ** 32 },
      { model: "tiny", seed: "x" },
      { model: "tiny", stop: "\n" },
      { model: "tiny", stop: [""] },
      { model: "tiny", stop: Array(9).fill("a") },
      { model: "tiny", stop: ["a".repeat(65)] },
      { model: "tiny", prime: 5 },
      { model: "tiny", prime: "Zebra" },
      { model: "tiny", prime: "a".repeat(2001) },
      { model: "tiny", topK: 5 },
      { model: "tiny", __proto__: { x: 1 }, extra: true },
      { model: "nope" },
      { model: "../../etc/passwd" },
      { model: "" },
      { model: 5 },
      { prime: "All" },
      {},
    ].flatMap((b) => [gen(b), { ...gen(b), path: "/api/generate/stream" }]),
    raw("POST", "/api/generate", "{nope"),
    raw("POST", "/api/generate", ""),
    raw("POST", "/api/generate", "null"),
    raw("POST", "/api/generate", "[]"),
    raw("POST", "/api/generate", '"text"'),
    raw("POST", "/api/generate", "{}".padEnd(70_000, " ")),
    raw("POST", "/api/generate", "prime=All", "application/x-www-form-urlencoded"),
    raw("POST", "/api/generate", "hi", "text/plain"),
    raw("POST", "/api/generate", "{}", "application/xml"),
    raw("GET", "/api/generate"),
    raw("GET", "/api/generate/stream"),
    raw("PUT", "/api/generate", "{}"),
    raw("DELETE", "/api/generate"),
    raw("PATCH", "/api/generate/stream", "{}"),
    raw("GET", "/api/models/nope"),
    raw("GET", "/api/models/nope/weights"),
    raw("GET", "/api/models/nope/manifest"),
    raw("GET", "/api/models/nope/loss.svg"),
    raw("GET", "/api/models/..%2f..%2fetc/weights"),
    raw("GET", "/api/models/%E0%A4%A"),
    raw("GET", "/api/models/a%00b"),
    raw("GET", "/api/models/" + "x".repeat(200)),
    raw("GET", "/api/nothing"),
    raw("POST", "/api/models", "{}"),
    raw("DELETE", "/api/models/tiny"),
    raw("GET", "/..%2fpackage.json"),
    raw("GET", "/%2e%2e/%2e%2e/package.json"),
    raw("GET", "/.secret.js"),
    raw("GET", "/nothing.html"),
    raw("GET", "/dist/nothing.js"),
    raw("GET", "/%"),
    raw("GET", "/index.html%00.png"),
    raw("POST", "/healthz", "{}"),
  ];
  HTTP_COUNT.n = cases.length;
  const out: Outcome[] = [];
  try {
    for (const c of cases) {
      const what = `HTTP ${c.method} ${c.path} ${c.body === undefined ? "" : c.body.slice(0, 60)}`;
      const r = await send(port, c.method, c.path, c.type, c.body);
      let ok = r.status >= 400 && r.status < 500;
      let why = `${r.status} ${r.body.slice(0, 120)}`;
      try {
        const body = JSON.parse(r.body) as Record<string, unknown>;
        const keys = Object.keys(body).sort().join(",");
        if (keys !== "code,error" || typeof body.error !== "string" || body.error.includes("\n")) {
          ok = false;
          why = `body is not {error, code}: ${why}`;
        }
      } catch {
        ok = false;
        why = `body is not JSON: ${why}`;
      }
      out.push({ what, ok, why });
    }
  } finally {
    await app.close();
  }
  return out;
}

function send(
  port: number,
  method: string,
  path: string,
  type: string,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> =
      body === undefined ? {} : { "content-type": type, "content-length": Buffer.byteLength(body) };
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (s: string) => (text += s));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", (err) => resolve({ status: 0, body: `connection error: ${err.message}` }));
    req.end(body);
  });
}
