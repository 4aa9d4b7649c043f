// A content digest of a directory tree: every path with its type, mode, owner, link target and file
// content. Two trees with the same digest produce the same file-system image, so an image can be reused.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";

/** With `mtimes`, modification times count too (what "restored byte for byte" means for rollback). */
export async function treeDigest(root: string, o: { mtimes?: boolean } = {}): Promise<string> {
  const h = createHash("sha256");
  // Hard links are recorded as "same as the first path seen", which does not depend on inode numbers.
  const firstPathOfInode = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const entries = (await readdir(join(root, rel))).sort();
    for (const name of entries) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = await lstat(p);
      h.update(`${r}\0${st.mode}\0${st.uid}\0${st.gid}\0${o.mtimes ? `${st.mtimeMs}\0` : ""}`);
      if (st.nlink > 1 && !st.isDirectory()) {
        const id = `${st.dev}:${st.ino}`;
        const first = firstPathOfInode.get(id);
        if (first) {
          h.update(`H${first}\0`);
          continue;
        }
        firstPathOfInode.set(id, r);
      }
      if (st.isSymbolicLink()) h.update(`L${await readlink(p)}\0`);
      else if (st.isFile()) {
        const fh = createHash("sha256");
        for await (const c of createReadStream(p)) fh.update(c as Buffer);
        h.update(`F${st.size}:${fh.digest("hex")}\0`);
      } else if (st.isDirectory()) await walk(r);
      else h.update(`D${st.rdev}\0`);
    }
  };
  await walk("");
  return h.digest("hex");
}
