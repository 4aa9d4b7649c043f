// Decompression for the formats Debian uses. gzip and zstd come from node:zlib; xz, lzma and bzip2 have
// no built-in codec, so the system's xz-utils and bzip2 do that work as child processes.

import { spawn } from "node:child_process";
import { Duplex, PassThrough, type Readable } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { BerthError } from "./errors.ts";

export type Compression = "none" | "gz" | "xz" | "lzma" | "zst" | "bz2";

export function compressionOfName(name: string): Compression {
  if (name.endsWith(".gz")) return "gz";
  if (name.endsWith(".xz")) return "xz";
  if (name.endsWith(".lzma")) return "lzma";
  if (name.endsWith(".zst")) return "zst";
  if (name.endsWith(".bz2")) return "bz2";
  return "none";
}

/** Recognises a compressed stream by its magic bytes. */
export function compressionOfMagic(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gz";
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a)
    return "xz";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zst";
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bz2";
  if (head[0] === 0x5d && head[1] === 0x00 && head[2] === 0x00) return "lzma";
  return "none";
}

/** A filter process as a Duplex; it fails with the tool's own message when the tool exits non-zero. */
export function spawnFilter(cmd: string, args: string[], what: string): Duplex {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4000) stderr += d;
  });
  const out = new PassThrough();
  let failed = false;
  const fail = (msg: string) => {
    if (failed) return;
    failed = true;
    duplex.destroy(new BerthError(msg));
  };
  child.on("error", (e: NodeJS.ErrnoException) =>
    fail(e.code === "ENOENT" ? `${cmd} is not installed (needed for ${what})` : `${cmd}: ${e.message}`),
  );
  child.stdout.pipe(out, { end: false });
  child.on("close", (code) => {
    if (code === 0) out.end();
    else fail(`corrupt ${what}: ${stderr.trim().split("\n").pop() || `${cmd} exited with ${code}`}`);
  });
  // When the tool exits early (corrupt input, or a reader that stopped), writes to its stdin fail with
  // EPIPE; the exit status is what tells us which, so stdin errors themselves are ignored.
  child.stdin.on("error", () => {});
  const input = new PassThrough();
  input.pipe(child.stdin);
  const duplex = Duplex.from({ writable: input, readable: out });
  duplex.on("close", () => {
    if (child.exitCode === null) child.kill();
  });
  return duplex;
}

export function decompressor(kind: Compression, what = "data"): Duplex {
  switch (kind) {
    case "none":
      return new PassThrough();
    case "gz":
      return wrapZlib(createGunzip(), what);
    case "zst":
      return wrapZlib(createZstdDecompress(), what);
    case "xz":
      return spawnFilter("xz", ["-dc", "-T1"], `${what} (xz)`);
    case "lzma":
      return spawnFilter("xz", ["--format=lzma", "-dc"], `${what} (lzma)`);
    case "bz2":
      return spawnFilter("bzip2", ["-dc"], `${what} (bzip2)`);
  }
}

function wrapZlib(z: Duplex, what: string): Duplex {
  const out = new PassThrough();
  z.on("error", (e: Error) => out.destroy(new BerthError(`corrupt ${what}: ${e.message}`)));
  z.pipe(out);
  return Duplex.from({ writable: z, readable: out });
}

/** Decompresses a whole stream into a Buffer, refusing output larger than `limit` bytes. */
export async function decompressToBuffer(
  source: Readable,
  kind: Compression,
  what: string,
  limit = 1 << 30,
): Promise<Buffer> {
  const d = decompressor(kind, what);
  source.on("error", (e) => d.destroy(e));
  source.pipe(d);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of d) {
    size += (c as Buffer).length;
    if (size > limit) {
      d.destroy();
      throw new BerthError(`${what} expands beyond ${limit} bytes; refusing it`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
