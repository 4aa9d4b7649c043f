// The effects of maintainer scripts, written out instead of run (as chisel does): the users and groups
// adduser would create, directories with their owners, alternatives and enablement symlinks, files,
// and generated files such as the CA bundle that update-ca-certificates would make. Plus the dpkg
// inventory: one plain /var/lib/dpkg/status file, from each package's own control file.

import { posix } from "node:path";
import { BerthError } from "../common/errors.ts";
import type { ImageDefinition } from "./definition.ts";
import { type FileTree, relPath } from "./tree.ts";

const ORIGIN = "berth (definition)";

export function passwdText(def: ImageDefinition): string {
  return def.users.map((u) => `${u.name}:x:${u.uid}:${u.gid}:${u.name}:${u.home}:${u.shell}\n`).join("");
}

export function groupText(def: ImageDefinition): string {
  return def.groups.map((g) => `${g.name}:x:${g.gid}:${g.members.join(",")}\n`).join("");
}

function file(tree: FileTree, path: string, data: string | Buffer, mode = 0o644, uid = 0, gid = 0): void {
  tree.put(path, {
    type: "file",
    mode,
    uid,
    gid,
    data: typeof data === "string" ? Buffer.from(data) : data,
    origin: ORIGIN,
  });
}

function contentOf(tree: FileTree, path: string, what: string): Buffer {
  const hit = tree.lookup(path);
  if (hit?.node.type !== "file") throw new BerthError(`${what}: ${path} is not a file in the image`);
  return hit.node.data;
}

/**
 * update-ca-certificates without running it: every certificate under /usr/share/ca-certificates
 * (ca-certificates' postinst enables all of them on a fresh install), in byte order, each ending in a
 * newline, concatenated into the bundle; the per-certificate .pem links; the list in
 * /etc/ca-certificates.conf. The OpenSSL hash links are not made: the bundle is what clients read.
 */
export function writeCaBundle(tree: FileTree, bundlePath: string): number {
  const certs = tree
    .below("usr/share/ca-certificates")
    .filter((p) => p.endsWith(".crt") && tree.nodes.get(p)?.type === "file")
    .sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
  if (!certs.length) throw new BerthError("ca-bundle: no certificates under /usr/share/ca-certificates");
  const parts: Buffer[] = [];
  for (const c of certs) {
    const data = (tree.nodes.get(c) as { data: Buffer }).data;
    parts.push(data);
    if (data.length && data[data.length - 1] !== 0x0a) parts.push(Buffer.from("\n"));
    const name = posix.basename(c, ".crt").replace(/ /g, "_");
    tree.put(`etc/ssl/certs/${name}.pem`, {
      type: "symlink",
      target: `/${c}`,
      uid: 0,
      gid: 0,
      origin: ORIGIN,
    });
  }
  file(tree, bundlePath, Buffer.concat(parts));
  file(
    tree,
    "etc/ca-certificates.conf",
    `${certs.map((c) => c.slice("usr/share/ca-certificates/".length)).join("\n")}\n`,
  );
  return certs.length;
}

/** Applies the definition's effects to the unpacked tree, in a fixed order. */
export function applyEffects(tree: FileTree, def: ImageDefinition): void {
  file(tree, "etc/passwd", passwdText(def));
  file(tree, "etc/group", groupText(def));
  for (const d of def.directories) {
    const existing = tree.nodes.get(tree.resolveParents(d.path));
    if (existing && existing.type !== "directory")
      throw new BerthError(`${def.source}: directory ${d.path} is a ${existing.type} in the packages`);
    tree.put(d.path, { type: "directory", mode: d.mode, uid: d.uid, gid: d.gid, origin: ORIGIN });
  }
  for (const s of def.symlinks)
    tree.put(s.path, { type: "symlink", target: s.target, uid: 0, gid: 0, origin: ORIGIN });
  for (const f of def.files) file(tree, f.path, f.content, f.mode, f.uid, f.gid);
  for (const g of def.generate) {
    if (g.kind === "ca-bundle") writeCaBundle(tree, g.path);
    else
      file(
        tree,
        g.path,
        Buffer.concat([
          Buffer.from(g.prefix),
          ...g.sources.map((s) => contentOf(tree, s, `${def.source}: generate ${g.path}`)),
        ]),
      );
  }
}

/** One dpkg status stanza from a package's control file: the control text with its Status line. */
export function statusStanza(control: string): string {
  const text = control.replace(/\n+$/, "");
  const lines = text.split("\n");
  const i = lines.findIndex((l) => l.startsWith("Package:"));
  if (i < 0) throw new BerthError("control file without a Package field");
  lines.splice(i + 1, 0, "Status: install ok installed");
  return `${lines.join("\n")}\n`;
}

/** The status file: stanzas sorted by package name, separated by blank lines, as dpkg writes it. */
export function statusFile(stanzas: { name: string; control: string }[]): string {
  return [...stanzas]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((s) => statusStanza(s.control))
    .join("\n");
}

/** The programs that make a shell, wherever a package put them. */
export const SHELLS = ["usr/bin/sh", "usr/bin/dash", "usr/bin/bash", "usr/bin/busybox", "bin/sh", "bin/bash"];

export function shellsIn(tree: FileTree): string[] {
  return SHELLS.filter((s) => tree.lookup(s)).map((s) => `/${relPath(s)}`);
}
