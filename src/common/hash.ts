import { createHash, type Hash } from "node:crypto";
import { open } from "node:fs/promises";
import { Transform, type TransformCallback } from "node:stream";

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A byte range of a file, [start, start + size). */
export interface ByteRange {
  start: number;
  size: number;
}

const BLOCK = 4 * 1024 * 1024;
let zeroBlock: Buffer | undefined;

/**
 * Reads in 4 MiB blocks with one buffer: a read stream's 64 KiB chunks cost a thread-pool round trip
 * each. `zeros` names ranges the caller made and knows hold only zeros (a disk image's empty slot):
 * they are hashed from a zero buffer instead of read, because reading a hole makes the kernel allocate
 * and clear a page-cache page for every 4 KiB of it, most of the cost of hashing a sparse disk image.
 */
export async function sha256File(path: string, o: { zeros?: readonly ByteRange[] } = {}): Promise<string> {
  const h = createHash("sha256");
  const zeros = [...(o.zeros ?? [])].filter((z) => z.size > 0).sort((a, b) => a.start - b.start);
  const fh = await open(path, "r");
  try {
    const size = zeros.length ? (await fh.stat()).size : Number.POSITIVE_INFINITY;
    const buf = Buffer.allocUnsafe(BLOCK);
    let pos = 0;
    const readUpTo = async (end: number) => {
      while (pos < end) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(BLOCK, end - pos), pos);
        if (bytesRead === 0) return;
        h.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    };
    for (const z of zeros) {
      if (z.start < pos || z.start + z.size > size)
        throw new Error(`${path}: bad zero range ${z.start}+${z.size}`);
      await readUpTo(z.start);
      zeroBlock ??= Buffer.alloc(BLOCK);
      for (let left = z.size; left > 0; left -= BLOCK) h.update(zeroBlock.subarray(0, Math.min(BLOCK, left)));
      pos = z.start + z.size;
    }
    await readUpTo(Number.POSITIVE_INFINITY);
  } finally {
    await fh.close();
  }
  return h.digest("hex");
}

/** A pass-through stream that hashes and counts what flows through it. */
export class HashingStream extends Transform {
  private readonly hash: Hash = createHash("sha256");
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  digest(): string {
    return this.hash.digest("hex");
  }
}
