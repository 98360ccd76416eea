// Which backend auto, a preset and the user get (src/engine/backends/choose.ts): on a software Vulkan adapter
// (SwiftShader, as on CI's machines) auto and a preset that asks for webgpu (the gpu preset) train on wasm and say
// why, while a user's --backend webgpu still runs there.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chooseBackend } from "../src/engine/backends/choose.js";
import { closeBackends, probeWebgpu } from "../src/engine/backends/index.js";
import { dawnInstancesMade } from "../src/engine/backends/webgpu/device.js";

after(() => closeBackends());
const probe = await probeWebgpu().catch((e: Error) => ({ ok: false as const, reason: e.message }));
const software = !probe.ok && /only a software adapter/.test(probe.reason);

test(
  "a software adapter: auto and a preset's webgpu take wasm and say why; a user's webgpu runs on it",
  {
    skip: software ? false : `no software adapter here (${probe.ok ? probe.description : probe.reason})`,
  },
  async () => {
    for (const [want, fallback] of [
      ["auto", false],
      ["webgpu", true],
    ] as const) {
      const chosen = await chooseBackend(want, fallback);
      assert.equal(chosen.name, "wasm", `${want} (preset: ${fallback})`);
      assert.match(chosen.line, /^backend: wasm \(.*\); webgpu: only a software adapter \(.*\)$/);
    }
    const named = await chooseBackend("webgpu", false);
    assert.equal(named.name, "webgpu");
    assert.match(named.line, /^backend: webgpu \(/);
    // Three probes and a device share one Dawn instance (a Vulkan instance each; a dropped one is a known cause of
    // crashes, docs/webgpu.md).
    assert.equal(dawnInstancesMade(), 1);
  },
);
