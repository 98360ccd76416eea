import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  defaultCacheDir,
  loadTinyShakespeare,
  TINY_SHAKESPEARE,
  type DatasetSpec,
} from "../src/data/tinyshakespeare.js";
import { CharlmError } from "../src/util/errors.js";

const SHARED = process.env.CHARLM_TINYSHAKESPEARE ?? "../shared/data/tinyshakespeare.txt";
const BODY = Buffer.from("First Citizen:\nBefore we proceed any further, hear me speak.\n");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A local server on 127.0.0.1, port 0, serving BODY at /input.txt (and counting requests). */
async function serve(body: Buffer = BODY): Promise<{ close: () => Promise<void>; url: string; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.url !== "/input.txt") {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  // fetch keeps connections alive; drop them so close() returns at once.
  const close = () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r())));
  return { close, url: `http://127.0.0.1:${port}/input.txt`, hits: () => hits };
}

function specFor(url: string, body: Buffer = BODY, hash = sha(body)): DatasetSpec {
  return {
    url,
    bytes: body.length,
    sha256: hash,
    splits: { train: [0, 40], validation: [40, 50], test: [50, body.length] },
  };
}

const quiet = { quiet: true, env: {} as NodeJS.ProcessEnv };

test("the dataset is described exactly as TFDS defines it", () => {
  assert.equal(
    TINY_SHAKESPEARE.url,
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
  );
  assert.equal(TINY_SHAKESPEARE.bytes, 1115394);
  assert.equal(TINY_SHAKESPEARE.sha256, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed");
  assert.deepEqual(TINY_SHAKESPEARE.splits, {
    train: [0, 1003854],
    validation: [1003854, 1059624],
    test: [1059624, 1115394],
  });
});

test("cache dir: CHARLM_CACHE_DIR, else XDG_CACHE_HOME/charlm, else ~/.cache/charlm", () => {
  assert.equal(defaultCacheDir({ CHARLM_CACHE_DIR: "/c", XDG_CACHE_HOME: "/x" }), "/c");
  assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "/x" }), "/x/charlm");
  assert.match(defaultCacheDir({}), /\.cache\/charlm$/);
});

test("download: fetched, verified, cached atomically, then served from the cache", async () => {
  const { close, url, hits } = await serve();
  try {
    const cacheDir = await mkdtemp(join(tmpdir(), "charlm-cache-"));
    const ts = await loadTinyShakespeare({ ...quiet, cacheDir, spec: specFor(url) });
    assert.equal(ts.source, `download ${url}`);
    assert.equal(ts.text, BODY.toString());
    assert.equal(ts.train, BODY.toString().slice(0, 40));
    assert.equal(ts.validation + ts.test, BODY.toString().slice(40));
    assert.deepEqual(await readdir(cacheDir), ["tinyshakespeare.txt"]); // no temp file left behind
    assert.deepEqual(await readFile(join(cacheDir, "tinyshakespeare.txt")), BODY);
    // Second load: from the cache, no request.
    const again = await loadTinyShakespeare({ ...quiet, cacheDir, spec: specFor(url) });
    assert.equal(again.source, join(cacheDir, "tinyshakespeare.txt"));
    assert.equal(hits(), 1);
    // A damaged cached copy is replaced by a fresh download.
    await writeFile(join(cacheDir, "tinyshakespeare.txt"), "garbage");
    const fresh = await loadTinyShakespeare({ ...quiet, cacheDir, spec: specFor(url) });
    assert.equal(fresh.source, `download ${url}`);
    assert.equal(hits(), 2);
    // The progress bar goes to the log stream.
    let logged = "";
    const log = { write: (s: string) => ((logged += s), true) } as unknown as NodeJS.WritableStream;
    await loadTinyShakespeare({
      env: {},
      cacheDir: await mkdtemp(join(tmpdir(), "charlm-cache-")),
      spec: specFor(url),
      log,
    });
    assert.match(logged, /Tiny Shakespeare .*100%/);
  } finally {
    await close();
  }
});

test("checksum mismatch: one-line error telling how to supply the file, and nothing is cached", async () => {
  const { close, url } = await serve();
  try {
    const cacheDir = await mkdtemp(join(tmpdir(), "charlm-cache-"));
    const spec = specFor(url, BODY, "0".repeat(64));
    await assert.rejects(loadTinyShakespeare({ ...quiet, cacheDir, spec }), (err: Error) => {
      assert.ok(err instanceof CharlmError);
      assert.ok(!err.message.includes("\n"));
      assert.match(err.message, /sha256 [0-9a-f]{64} does not match the expected 0{64}/);
      assert.match(
        err.message,
        /set CHARLM_TINYSHAKESPEARE=\/path\/to\/input\.txt \(or use --data tinyshakespeare:FILE\)/,
      );
      return true;
    });
    assert.equal(existsSync(join(cacheDir, "tinyshakespeare.txt")), false);
  } finally {
    await close();
  }
});

test("failed downloads (HTTP error, nothing listening, downloads off) are clear errors", async () => {
  const { close, url } = await serve();
  const cacheDir = await mkdtemp(join(tmpdir(), "charlm-cache-"));
  try {
    const missing = specFor(url.replace("input.txt", "missing.txt"));
    await assert.rejects(
      loadTinyShakespeare({ ...quiet, cacheDir, spec: missing }),
      /failed \(HTTP 404\); download .* by hand/,
    );
  } finally {
    await close();
  }
  // nothing listening: a port whose server closed before any request (after one, fetch may still hold a pooled
  // connection to it that the closing server drops: a socket error instead of a refused connection)
  const gone = await serve();
  await gone.close();
  await assert.rejects(
    loadTinyShakespeare({ ...quiet, cacheDir, spec: specFor(gone.url) }),
    /download of .* failed \(ECONNREFUSED\)/,
  );
  await assert.rejects(
    loadTinyShakespeare({ ...quiet, cacheDir, spec: specFor(url), download: false }),
    /not in .* and downloading is off; download .* by hand/,
  );
});

test("explicit path and CHARLM_TINYSHAKESPEARE come first; a wrong file is refused, never silently replaced", async () => {
  const dir = await mkdtemp(join(tmpdir(), "charlm-ts-"));
  const good = join(dir, "good.txt");
  await writeFile(good, BODY);
  const spec = specFor("http://127.0.0.1:9/unused");
  const byPath = await loadTinyShakespeare({ ...quiet, path: good, spec, cacheDir: dir });
  assert.equal(byPath.source, good);
  const byEnv = await loadTinyShakespeare({ quiet: true, env: { CHARLM_TINYSHAKESPEARE: good }, spec, cacheDir: dir });
  assert.equal(byEnv.text, BODY.toString());
  await assert.rejects(
    loadTinyShakespeare({ quiet: true, env: { CHARLM_TINYSHAKESPEARE: join(dir, "nope.txt") }, spec }),
    /CHARLM_TINYSHAKESPEARE=.*nope\.txt: cannot read Tiny Shakespeare \(no such file\)/,
  );
  const bad = join(dir, "bad.txt");
  await writeFile(bad, "x".repeat(BODY.length));
  await assert.rejects(loadTinyShakespeare({ ...quiet, path: bad, spec }), /bad\.txt: sha256 .* does not match/);
  // Non-ASCII content cannot be split by byte index: refused even if the checksum was published for it.
  const utf = Buffer.from("é".repeat(30));
  await writeFile(bad, utf);
  await assert.rejects(loadTinyShakespeare({ ...quiet, path: bad, spec: specFor("x", utf) }), /byte 0 is not ASCII/);
});

test(
  "the real file: TFDS split lengths, pure ASCII, 65 characters",
  { skip: !existsSync(SHARED) && "no local copy" },
  async () => {
    const ts = await loadTinyShakespeare({ path: SHARED, quiet: true });
    assert.equal(ts.text.length, 1115394);
    assert.equal(ts.train.length, 1003854);
    assert.equal(ts.validation.length, 55770);
    assert.equal(ts.test.length, 55770);
    assert.equal(ts.train + ts.validation + ts.test, ts.text);
    assert.ok(ts.train.startsWith("First Citizen:\nBefore we proceed any further, hear me speak."));
    assert.equal(new Set(ts.text).size, 65);
  },
);
