// Berth's own CLI inside the image, so a node runs `berth update` itself: the project's Node.js 24 (the
// `node` package's binary, stripped of its symbols with binutils' strip: 126 MB -> 108 MB) and Berth
// bundled into one ES module by rolldown (the bundler Vite uses; 2.3 MB minified, no node_modules to
// ship). Both are built once per input and kept in Berth's cache.

import { existsSync } from "node:fs";
import { readFile, rename, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BerthError } from "../common/errors.ts";
import { runChecked } from "../common/exec.ts";
import { sha256File, sha256Hex } from "../common/hash.ts";
import { treeDigest } from "../common/tree-digest.ts";
import type { BaseFile } from "./base-package.ts";

/** The checkout (or installed copy) of Berth that is building the image. */
const BERTH_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export const NODE_IN_IMAGE = "/usr/lib/berth/node";
/** Under /opt: the build appends /opt to a root image compressed without it (build.ts compressRoot). */
export const BUNDLE_IN_IMAGE = "/opt/berth/berth.mjs";

const WRAPPER = `#!/bin/sh
# Berth's CLI on the image's own Node.js 24 (${NODE_IN_IMAGE}).
# V8's code cache (in /var, the root is read-only) halves start-up time after the first run.
: "\${NODE_COMPILE_CACHE:=/var/cache/berth/node-compile-cache}"
export NODE_COMPILE_CACHE
exec ${NODE_IN_IMAGE} --disable-warning=ExperimentalWarning --disable-warning=DEP0040 ${BUNDLE_IN_IMAGE} "$@"
`;

/** Node.js 24 without its symbol tables, cached by the digest of the original binary. */
async function strippedNode(cacheDir: string): Promise<string> {
  const node = process.execPath;
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 24) throw new BerthError(`the image needs Node.js 24 or newer; this is ${process.version}`);
  const out = join(cacheDir, `node-${(await sha256File(node)).slice(0, 16)}`);
  if (existsSync(out)) return out;
  const tmp = `${out}.tmp-${process.pid}`;
  await runChecked("stripping node", "strip", ["--strip-all", "-o", tmp, node]);
  await rename(tmp, out);
  return out;
}

/** Berth's CLI as one ES module, cached by the digest of the sources and the lock file. */
async function bundle(cacheDir: string): Promise<string> {
  const key = sha256Hex(
    `${await treeDigest(join(BERTH_ROOT, "src"))} ${await sha256File(join(BERTH_ROOT, "package-lock.json"))}`,
  ).slice(0, 16);
  const out = join(cacheDir, `berth-${key}.mjs`);
  if (existsSync(out)) return out;
  const { rolldown } = await import("rolldown");
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    const b = await rolldown({
      input: join(BERTH_ROOT, "src/cli/main.ts"),
      platform: "node",
      cwd: BERTH_ROOT,
      // The bundler itself stays out: building images is not a node's job.
      external: ["rolldown"],
      // Its warnings are about optional XML plug-ins of the CycloneDX library that Berth never loads.
      logLevel: "silent",
    });
    await b.write({ file: tmp, format: "esm", minify: true, codeSplitting: false });
    await b.close();
  } catch (e) {
    await rm(tmp, { force: true });
    throw new BerthError(`bundling Berth's CLI for the image failed: ${(e as Error).message.split("\n")[0]}`);
  }
  await rename(tmp, out);
  return out;
}

const ICED_WASM = "iced_x86_bg.wasm";
const icedWasm = () => join(dirname(createRequire(import.meta.url).resolve("iced-x86")), ICED_WASM);

/** The files of Berth's CLI in the image: the node binary, the bundle and /usr/bin/berth. */
export async function berthRuntimeFiles(cacheDir: string): Promise<BaseFile[]> {
  const [node, cli] = await Promise.all([strippedNode(cacheDir), bundle(cacheDir)]);
  return [
    { path: NODE_IN_IMAGE.slice(1), mode: 0o755, content: await readFile(node) },
    { path: BUNDLE_IN_IMAGE.slice(1), mode: 0o644, content: await readFile(cli) },
    // iced-x86 (the live patcher's disassembler) reads its WebAssembly from beside the module that
    // loads it, which in the image is the bundle; without it any command that reaches src/patch fails.
    {
      path: join(dirname(BUNDLE_IN_IMAGE), ICED_WASM).slice(1),
      mode: 0o644,
      content: await readFile(icedWasm()),
    },
    { path: "usr/bin/berth", mode: 0o755, content: WRAPPER },
  ];
}
