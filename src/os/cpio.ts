// A cpio "newc" archive writer for initramfs images, hand-written: the format is a fixed ASCII header per
// entry, and writing it here keeps the initramfs byte-for-byte reproducible (fixed inode numbers, times).

export interface CpioEntry {
  path: string;
  type: "file" | "directory" | "symlink";
  mode: number;
  data?: Uint8Array;
  /** Symlink target. */
  target?: string;
}

const TYPE_BITS = { file: 0o100000, directory: 0o040000, symlink: 0o120000 } as const;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(fields: number[], name: string): Buffer {
  const hex = fields.map((f) => f.toString(16).padStart(8, "0")).join("");
  const nameBytes = Buffer.from(`${name}\0`, "utf8");
  const head = Buffer.from(`070701${hex}`, "latin1");
  return Buffer.concat([head, nameBytes, Buffer.alloc(pad4(head.length + nameBytes.length))]);
}

/** Serialises entries (in the given order) with all owners root and all times `mtime`. */
export function writeCpio(entries: CpioEntry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const body =
      e.type === "symlink" ? Buffer.from(e.target ?? "", "utf8") : Buffer.from(e.data ?? new Uint8Array());
    const mode = TYPE_BITS[e.type] | (e.mode & 0o7777);
    const nlink = e.type === "directory" ? 2 : 1;
    parts.push(
      header(
        [ino++, mode, 0, 0, nlink, mtime, body.length, 0, 0, 0, 0, Buffer.byteLength(e.path) + 1, 0],
        e.path,
      ),
    );
    parts.push(body, Buffer.alloc(pad4(body.length)));
  }
  parts.push(header([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, "TRAILER!!!".length + 1, 0], "TRAILER!!!"));
  return Buffer.concat(parts);
}
