// The image's root file system, held in memory while it is assembled: the data of each .deb unpacked the
// way dpkg would (through directory symlinks such as /bin -> usr/bin), cuts applied by glob, effects
// written on top, then serialized into one deterministic layer tarball (sorted, one mtime, numeric
// owners, hard links for identical files that shared an inode in the package).

import { posix } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { BerthError } from "../common/errors.ts";
import { walkTar } from "../common/tar.ts";
import { memberTarStream, openDeb } from "../pkg/deb.ts";

export type TreeNode =
  | { type: "file"; mode: number; uid: number; gid: number; data: Buffer; origin: string }
  | { type: "directory"; mode: number; uid: number; gid: number; origin: string }
  | { type: "symlink"; target: string; uid: number; gid: number; origin: string };

/** "/usr/bin/x", "usr/bin/x/" and "./usr/bin/x" are all "usr/bin/x"; "" is the root. */
export function relPath(p: string): string {
  return posix.normalize(`/${p}`).slice(1).replace(/\/$/, "");
}

/** A shell-style glob (`*`, `?`, `**` for any depth) as a regular expression over relative paths. */
export function globToRegExp(glob: string): RegExp {
  const g = relPath(glob);
  let re = "";
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === "*" && g[i + 1] === "*") {
      // "dir/**" matches everything below dir; "**/x" matches x at any depth.
      if (g[i + 2] === "/") {
        re += "(?:.*/)?";
        i += 2;
      } else {
        re += ".*";
        i += 1;
      }
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** One entry of a .deb's data tarball, read into memory. */
export interface DebEntry {
  path: string;
  type: "file" | "directory" | "symlink" | "link";
  mode: number;
  uid: number;
  gid: number;
  data?: Buffer;
  /** Symlink target, or the (relative) path a hard link names. */
  target?: string;
}

/** Reads a .deb's data tarball (device nodes and FIFOs, never in Debian's data, are skipped). */
export async function readDebEntries(debPath: string): Promise<DebEntry[]> {
  const deb = await openDeb(debPath);
  const out: DebEntry[] = [];
  await walkTar(
    memberTarStream(deb, "data"),
    async (info, body: Readable) => {
      if (info.path === "") return;
      const head = { path: info.path, mode: info.mode & 0o7777, uid: info.uid, gid: info.gid };
      if (info.type === "directory") out.push({ ...head, type: "directory" });
      else if (info.type === "file") {
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(c as Buffer);
        out.push({ ...head, type: "file", data: Buffer.concat(chunks) });
      } else if (info.type === "symlink") out.push({ ...head, type: "symlink", target: info.linkname ?? "" });
      else if (info.type === "link")
        out.push({ ...head, type: "link", target: relPath(info.linkname ?? "") });
    },
    { what: `${debPath} ${deb.data.name}` },
  );
  return out;
}

export class FileTree {
  readonly nodes = new Map<string, TreeNode>();

  constructor() {
    this.nodes.set("", { type: "directory", mode: 0o755, uid: 0, gid: 0, origin: "berth" });
  }

  /**
   * Where a path really lands: every parent component that is a symlink is followed, as the kernel and
   * dpkg do, so a package's /bin/sh lands in usr/bin when /bin is a link to usr/bin.
   */
  resolveParents(path: string): string {
    const parts = relPath(path).split("/").filter(Boolean);
    let cur = "";
    for (let i = 0, hops = 0; i < parts.length - 1; i++) {
      const next = cur ? `${cur}/${parts[i]}` : parts[i]!;
      const node = this.nodes.get(next);
      if (node?.type === "symlink") {
        if (++hops > 32) throw new BerthError(`too many symlinks resolving ${path}`);
        const target = node.target.startsWith("/")
          ? relPath(node.target)
          : relPath(posix.join(posix.dirname(`/${next}`), node.target));
        const rest = parts.slice(i + 1);
        parts.splice(0, parts.length, ...target.split("/").filter(Boolean), ...rest);
        cur = "";
        i = -1;
        continue;
      }
      cur = next;
    }
    return parts.join("/");
  }

  /** Follows symlinks all the way: the node a path finally names, if any. */
  lookup(path: string): { path: string; node: TreeNode } | undefined {
    let p = this.resolveParents(path);
    for (let hops = 0; hops < 32; hops++) {
      const node = this.nodes.get(p);
      if (node?.type !== "symlink") return node ? { path: p, node } : undefined;
      const t = node.target.startsWith("/")
        ? relPath(node.target)
        : relPath(posix.join(posix.dirname(`/${p}`), node.target));
      p = this.resolveParents(t);
    }
    return undefined;
  }

  private ensureParents(path: string, origin: string): void {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      const n = this.nodes.get(dir);
      if (!n) this.nodes.set(dir, { type: "directory", mode: 0o755, uid: 0, gid: 0, origin });
      else if (n.type !== "directory")
        throw new BerthError(`${origin}: cannot create ${path}: ${dir} is not a directory`);
    }
  }

  /** Puts a node at a path (parents followed and created); a directory keeps what it contains. */
  put(path: string, node: TreeNode): string {
    const p = this.resolveParents(path);
    if (p === "") {
      if (node.type === "directory") this.nodes.set("", node);
      return p;
    }
    this.ensureParents(p, node.origin);
    const old = this.nodes.get(p);
    if (old?.type === "directory" && node.type !== "directory") {
      for (const k of this.nodes.keys())
        if (k.startsWith(`${p}/`))
          throw new BerthError(
            `${node.origin}: cannot replace the non-empty directory ${p} with a ${node.type}`,
          );
    }
    this.nodes.set(p, node);
    return p;
  }

  /** Unpacks a .deb's data the way dpkg would, without running anything. */
  async addDeb(debPath: string, pkg: string): Promise<void> {
    this.addEntries(await readDebEntries(debPath), pkg, debPath);
  }

  /** Puts the entries of one package into the tree, in archive order. */
  addEntries(entries: DebEntry[], pkg: string, what = pkg): void {
    const byPath = new Map<string, Buffer>();
    const links: DebEntry[] = [];
    for (const e of entries) {
      const base = { uid: e.uid, gid: e.gid, origin: pkg };
      if (e.type === "directory") {
        // An existing directory (or a symlink standing for one, like /lib) keeps its place.
        if (this.nodes.get(this.resolveParents(e.path))?.type === "symlink") continue;
        this.put(e.path, { type: "directory", mode: e.mode, ...base });
      } else if (e.type === "file") {
        byPath.set(e.path, e.data!);
        this.put(e.path, { type: "file", mode: e.mode, data: e.data!, ...base });
      } else if (e.type === "symlink") this.put(e.path, { type: "symlink", target: e.target!, ...base });
      else links.push(e);
    }
    // Hard links share the data Buffer; the layer writer turns shared Buffers back into tar links.
    for (const l of links) {
      const data = byPath.get(l.target!);
      if (!data)
        throw new BerthError(`${what}: hard link ${l.path} -> ${l.target}: target not in the package`);
      this.put(l.path, { type: "file", mode: l.mode, uid: l.uid, gid: l.gid, data, origin: pkg });
    }
  }

  /**
   * Removes what matches `cut` and no `keep` pattern. Parents of kept entries stay; returns the removed
   * paths with their byte counts, by the name of the rule that removed them.
   */
  cut(
    rules: { name: string; globs: string[] }[],
    keep: string[],
  ): Map<string, { paths: number; bytes: number }> {
    const keepRe = keep.map(globToRegExp);
    const compiled = rules.map((r) => ({ name: r.name, res: r.globs.map(globToRegExp) }));
    const removed = new Map<string, string>();
    for (const p of this.nodes.keys()) {
      if (p === "" || keepRe.some((k) => k.test(p))) continue;
      const rule = compiled.find((r) => r.res.some((re) => re.test(p)));
      if (rule) removed.set(p, rule.name);
    }
    // A kept entry's parents are kept too (usr/share/doc/x/copyright keeps usr/share/doc/x).
    for (const p of this.nodes.keys()) {
      if (removed.has(p)) continue;
      let d = posix.dirname(p);
      while (d !== "." && d !== "") {
        removed.delete(d);
        d = posix.dirname(d);
      }
    }
    const stats = new Map<string, { paths: number; bytes: number }>();
    for (const [p, rule] of removed) {
      const n = this.nodes.get(p)!;
      const s = stats.get(rule) ?? { paths: 0, bytes: 0 };
      s.paths++;
      if (n.type === "file") s.bytes += n.data.length;
      stats.set(rule, s);
      this.nodes.delete(p);
    }
    return stats;
  }

  /** Bytes of file content (each shared Buffer once). */
  contentBytes(): number {
    const seen = new Set<Buffer>();
    let n = 0;
    for (const node of this.nodes.values())
      if (node.type === "file" && !seen.has(node.data)) {
        seen.add(node.data);
        n += node.data.length;
      }
    return n;
  }

  /** The paths under a directory (not the directory itself), sorted. */
  below(dir: string): string[] {
    const d = relPath(dir);
    return [...this.nodes.keys()].filter((k) => k.startsWith(`${d}/`)).sort();
  }
}

const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The tree as one layer tarball: sorted entries, one mtime, numeric owners, no user or group names. */
export async function treeToTar(tree: FileTree, mtime: number): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => void chunks.push(c as Buffer));
  const ended = new Promise<void>((res, rej) => {
    pack.on("end", res);
    pack.on("error", rej);
  });
  const date = new Date(mtime * 1000);
  const firstPathOf = new Map<Buffer, string>();
  for (const path of [...tree.nodes.keys()].sort(byPath)) {
    if (path === "") continue;
    const n = tree.nodes.get(path)!;
    const head = { name: path, uid: n.uid, gid: n.gid, mtime: date, uname: "", gname: "" };
    if (n.type === "directory") pack.entry({ ...head, type: "directory", mode: n.mode });
    else if (n.type === "symlink") pack.entry({ ...head, type: "symlink", mode: 0o777, linkname: n.target });
    else {
      const first = firstPathOf.get(n.data);
      if (first !== undefined && n.data.length > 0)
        pack.entry({ ...head, type: "link", mode: n.mode, linkname: first });
      else {
        firstPathOf.set(n.data, path);
        pack.entry({ ...head, type: "file", mode: n.mode }, n.data);
      }
    }
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}
