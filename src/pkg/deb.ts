// Reading .deb packages: the ar members, the control and data tarballs (gz, xz, zst, bz2 or plain),
// one file out of either, and safe extraction.

import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { compressionOfName, decompressor } from "../common/decompress.ts";
import { BerthError } from "../common/errors.ts";
import {
  type ExtractOptions,
  type ExtractResult,
  extractTar,
  listTar,
  readTarFile,
  type TarEntryInfo,
} from "../common/tar.ts";
import { type ArMember, readArMembers } from "./ar.ts";
import { Deb822SyntaxError, parseDeb822, type Stanza } from "./deb822.ts";

export interface DebLayout {
  path: string;
  members: ArMember[];
  control: ArMember;
  data: ArMember;
}

/** Validates the ar layout of a .deb and finds its control and data members. */
export async function openDeb(path: string): Promise<DebLayout> {
  const members = await readArMembers(path);
  if (members[0]?.name !== "debian-binary")
    throw new BerthError(`${path} is not a .deb: first member is not debian-binary`);
  const control = members.find((m) => /^control\.tar(\.(gz|xz|zst))?$/.test(m.name));
  const data = members.find((m) => /^data\.tar(\.(gz|xz|zst|bz2|lzma))?$/.test(m.name));
  if (!control) throw new BerthError(`${path} is not a .deb: no control.tar member`);
  if (!data) throw new BerthError(`${path} is not a .deb: no data.tar member`);
  return { path, members, control, data };
}

/** The decompressed tar stream of one member. */
export function memberTarStream(deb: DebLayout, which: "control" | "data"): Readable {
  const m = deb[which];
  if (m.size === 0) throw new BerthError(`${deb.path}: ${m.name} is empty`);
  const raw = createReadStream(deb.path, { start: m.offset, end: m.offset + m.size - 1 });
  const d = decompressor(compressionOfName(m.name), `${deb.path} ${m.name}`);
  raw.on("error", (e) => d.destroy(e));
  return raw.pipe(d);
}

export async function listDeb(path: string, which: "control" | "data" = "data"): Promise<TarEntryInfo[]> {
  const deb = await openDeb(path);
  return listTar(memberTarStream(deb, which), { what: `${path} ${deb[which].name}` });
}

/** One file out of the data (or control) tarball; undefined when the package has no such file. */
export async function readDebFile(
  path: string,
  inner: string,
  which: "control" | "data" = "data",
): Promise<Buffer | undefined> {
  const deb = await openDeb(path);
  return readTarFile(memberTarStream(deb, which), inner, { what: `${path} ${deb[which].name}` });
}

/** The package's control stanza. */
export async function readDebControl(path: string): Promise<Stanza> {
  const buf = await readDebFile(path, "control", "control");
  if (!buf) throw new BerthError(`${path}: control.tar has no control file`);
  try {
    const s = parseDeb822(buf.toString("utf8"), { source: `${path} control` })[0];
    if (!s?.Package) throw new BerthError(`${path}: control file has no Package field`);
    return s;
  } catch (e) {
    if (e instanceof Deb822SyntaxError) throw new BerthError(`malformed control file: ${e.message}`);
    throw e;
  }
}

export async function extractDeb(
  path: string,
  dest: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const deb = await openDeb(path);
  return extractTar(memberTarStream(deb, "data"), dest, { what: `${path} ${deb.data.name}`, ...opts });
}
