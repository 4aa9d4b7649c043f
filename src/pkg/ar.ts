// The ar container of .deb files, hand-written: it is 60-byte headers and even-aligned data, and the
// maintained npm ar readers either buffer whole files or do not validate sizes against the file.

import { open } from "node:fs/promises";
import { BerthError } from "../common/errors.ts";

export interface ArMember {
  name: string;
  /** Offset of the member's data in the file. */
  offset: number;
  size: number;
  mode: number;
  mtime: number;
}

const MAGIC = "!<arch>\n";
const HEADER = 60;

/** Parses the member table of an ar archive, checking every size against the file's real length. */
export async function readArMembers(path: string, what = path): Promise<ArMember[]> {
  const fh = await open(path, "r").catch((e: NodeJS.ErrnoException) => {
    throw new BerthError(`cannot open ${what}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  });
  try {
    const { size: fileSize } = await fh.stat();
    const magic = Buffer.alloc(8);
    const { bytesRead } = await fh.read(magic, 0, 8, 0);
    if (bytesRead < 8 || magic.toString("latin1") !== MAGIC)
      throw new BerthError(`${what} is not an ar archive (bad magic)`);
    const members: ArMember[] = [];
    let pos = 8;
    const hdr = Buffer.alloc(HEADER);
    while (pos < fileSize) {
      if (pos + HEADER > fileSize)
        throw new BerthError(`${what} is truncated: incomplete member header at byte ${pos}`);
      await fh.read(hdr, 0, HEADER, pos);
      if (hdr[58] !== 0x60 || hdr[59] !== 0x0a)
        throw new BerthError(`${what} is corrupt: bad member header at byte ${pos}`);
      const field = (a: number, b: number) => hdr.toString("latin1", a, b).trim();
      const name = field(0, 16).replace(/\/$/, "");
      const sizeText = field(48, 58);
      if (!/^\d+$/.test(sizeText))
        throw new BerthError(`${what} is corrupt: member "${name}" has size "${sizeText}"`);
      const size = Number(sizeText);
      const offset = pos + HEADER;
      if (offset + size > fileSize)
        throw new BerthError(
          `${what} is truncated: member "${name}" needs ${size} bytes, only ${fileSize - offset} remain`,
        );
      members.push({
        name,
        offset,
        size,
        mode: Number.parseInt(field(40, 48) || "0", 8) || 0,
        mtime: Number(field(16, 28)) || 0,
      });
      pos = offset + size + (size % 2);
    }
    return members;
  } finally {
    await fh.close();
  }
}
