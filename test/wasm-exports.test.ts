// The TypeScript declarations of the wasm exports (src/engine/backends/wasm/exports.ts) against their source
// (assembly/index.ts and the files it re-exports from) and against the built module: the same functions, with the
// same parameters in the same order, so that a kernel's signature cannot change on one side only.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import ts from "typescript";
import { WASM_URL } from "../src/engine/backends/wasm/load.js";

const root = new URL("..", import.meta.url);

async function parse(path: string): Promise<ts.SourceFile> {
  const text = await readFile(new URL(path, root), "utf8");
  return ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
}

const isExported = (n: ts.Node) =>
  ts.canHaveModifiers(n) && (ts.getModifiers(n) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

/** Every function assembly/index.ts exports, with its parameter names, read from where it is defined. */
async function assemblyExports(): Promise<Map<string, string[]>> {
  const index = await parse("assembly/index.ts");
  const out = new Map<string, string[]>();
  const functionsOf = async (file: string) => {
    const src = await parse(file);
    const fns = new Map<string, string[]>();
    for (const s of src.statements) {
      if (ts.isFunctionDeclaration(s) && s.name && isExported(s)) {
        fns.set(
          s.name.text,
          s.parameters.map((p) => p.name.getText(src)),
        );
      }
    }
    return fns;
  };
  const own = await functionsOf("assembly/index.ts");
  for (const [name, params] of own) out.set(name, params);
  for (const s of index.statements) {
    if (!ts.isExportDeclaration(s) || !s.moduleSpecifier || !s.exportClause || !ts.isNamedExports(s.exportClause))
      continue;
    const file = `assembly/${(s.moduleSpecifier as ts.StringLiteral).text.replace(/^\.\//, "")}.ts`;
    const fns = await functionsOf(file);
    for (const el of s.exportClause.elements) {
      const name = (el.propertyName ?? el.name).text;
      assert.ok(
        fns.has(name),
        `assembly/index.ts re-exports ${name} from ${file}, which has no exported function of that name`,
      );
      out.set(el.name.text, fns.get(name)!);
    }
  }
  return out;
}

/** The methods of the Kernels interface, with their parameter names. */
async function declared(): Promise<Map<string, string[]>> {
  const src = await parse("src/engine/backends/wasm/exports.ts");
  const iface = src.statements.find(
    (s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === "Kernels",
  );
  assert.ok(iface, "exports.ts declares no interface Kernels");
  const out = new Map<string, string[]>();
  for (const m of iface.members) {
    if (ts.isMethodSignature(m)) {
      out.set(
        m.name.getText(src),
        m.parameters.map((p) => p.name.getText(src)),
      );
    }
  }
  return out;
}

test("exports.ts declares every function assembly/index.ts exports, with the same parameters", async () => {
  const [asm, decl] = [await assemblyExports(), await declared()];
  const missing = [...asm.keys()].filter((n) => !decl.has(n));
  const extra = [...decl.keys()].filter((n) => !asm.has(n));
  assert.deepEqual(missing, [], `exported by assembly/index.ts but not declared in exports.ts: ${missing.join(", ")}`);
  assert.deepEqual(extra, [], `declared in exports.ts but not exported by assembly/index.ts: ${extra.join(", ")}`);
  for (const [name, params] of asm) {
    assert.deepEqual(decl.get(name), params, `${name}: exports.ts declares other parameters than assembly/ defines`);
  }
});

test("the built module exports exactly the declared functions, and its memory", async () => {
  const mod = await WebAssembly.compile(await readFile(WASM_URL));
  const fns = WebAssembly.Module.exports(mod)
    .filter((e) => e.kind === "function")
    .map((e) => e.name)
    .sort();
  assert.deepEqual(fns, [...(await declared()).keys()].sort(), "build/kernels.wasm is stale? run npm run build:wasm");
  assert.ok(WebAssembly.Module.exports(mod).some((e) => e.kind === "memory" && e.name === "memory"));
});
