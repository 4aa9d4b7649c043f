// File and tree digests, against sha256sum as the oracle: the block reader, the zero ranges a disk
// image's builder vouches for, and the parallel tree walk (whose result must not depend on the order
// in which file reads finish).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { sha256File } from "../../src/common/hash.ts";
import { treeDigest } from "../../src/common/tree-digest.ts";

const dir = mkdtempSync(join(tmpdir(), "berth-digest-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const sha256sum = (p: string) => execFileSync("sha256sum", [p], { encoding: "utf8" }).split(" ")[0];
const MiB = 1024 * 1024;

test("sha256File equals sha256sum on empty, odd-sized and multi-block files", async () => {
  for (const [name, bytes] of [
    ["empty", 0],
    ["odd", 4097],
    ["blocks", 9 * MiB + 3],
  ] as const) {
    const p = join(dir, name);
    const b = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) b[i] = (i * 2654435761) >>> 24;
    writeFileSync(p, b);
    assert.equal(await sha256File(p), sha256sum(p), name);
  }
});

test("a sparse disk hashed with its known-zero ranges fed from memory gives sha256sum's digest", async () => {
  const p = join(dir, "disk.img");
  writeFileSync(p, "");
  truncateSync(p, 40 * MiB + 512);
  const fd = openSync(p, "r+");
  writeSync(fd, Buffer.from("head"), 0, 4, 0);
  writeSync(fd, Buffer.from("middle"), 0, 6, 20 * MiB - 3);
  writeSync(fd, Buffer.from("tail"), 0, 4, 40 * MiB + 500);
  closeSync(fd);
  const want = sha256sum(p);
  const zeros = [
    { start: 30 * MiB, size: 10 * MiB },
    { start: 1 * MiB, size: 5 * MiB + 7 },
  ];
  assert.equal(await sha256File(p, { zeros }), want);
  // A wrong claim changes the digest: the range is really hashed as zeros, not skipped.
  assert.notEqual(await sha256File(p, { zeros: [{ start: 20 * MiB - 8, size: 16 }] }), want);
  await assert.rejects(sha256File(p, { zeros: [{ start: 40 * MiB, size: 2 * MiB }] }), /bad zero range/);
});

test("treeDigest follows content, names, modes and links, whatever order reads finish in", async () => {
  const root = join(dir, "tree");
  mkdirSync(join(root, "a/b"), { recursive: true });
  // Many files, one large: the parallel reads finish out of order.
  writeFileSync(join(root, "big"), Buffer.alloc(3 * MiB, 7));
  for (let i = 0; i < 200; i++) writeFileSync(join(root, "a", `f${i}`), `file ${i}\n`);
  writeFileSync(join(root, "a/b/x"), "x");
  symlinkSync("../big", join(root, "a/link"));
  const d1 = await treeDigest(root);
  assert.equal(await treeDigest(root), d1, "not stable");
  writeFileSync(join(root, "a/f150"), "file 150!\n");
  const d2 = await treeDigest(root);
  assert.notEqual(d2, d1, "a content change was missed");
  writeFileSync(join(root, "a/f150"), "file 150\n");
  assert.equal(await treeDigest(root), d1, "restored content, different digest");
  execFileSync("chmod", ["600", join(root, "a/b/x")]);
  assert.notEqual(await treeDigest(root), d1, "a mode change was missed");
});
