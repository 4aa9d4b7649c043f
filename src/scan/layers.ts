// Reading container images layer by layer without unpacking them: only the files a scan needs (the
// dpkg database and os-release) are kept, whiteouts and opaque directories are applied as the OCI image
// spec says, and each package is attributed to the layer that put it in its final form.
// Formats: an OCI image layout directory, a `docker save` archive (legacy or OCI), and the same
// archive as a stream from the Docker engine. Hand-written: the OCI layout is a few JSON documents.

import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join, posix } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { compressionOfMagic, decompressor } from "../common/decompress.ts";
import { BerthError } from "../common/errors.ts";
import { HashingStream } from "../common/hash.ts";
import { walkTar } from "../common/tar.ts";
import { type InstalledPackage, parseStatusText } from "../pkg/status.ts";
import { type InventoryPackage, type LayerRef, type OsRelease, parseOsRelease } from "./inventory.ts";

/** Files a scan reads out of a layer. */
export function isInteresting(path: string): boolean {
  return (
    path === "var/lib/dpkg/status" ||
    (path.startsWith("var/lib/dpkg/status.d/") && !path.slice(23).includes("/")) ||
    path === "etc/os-release" ||
    path === "usr/lib/os-release" ||
    path === "etc/debian_version"
  );
}

const MAX_INTERESTING_FILE = 64 * 1024 * 1024;
/** Limits against decompression bombs: one layer may expand to at most this much. */
export const LAYER_LIMITS = {
  maxBytes: Number(process.env.BERTH_SCAN_MAX_LAYER_BYTES) || 32 * 1024 ** 3,
  maxEntries: 4_000_000,
};

export type LayerFile = { kind: "file"; data: Buffer } | { kind: "symlink"; target: string };

export interface ScannedLayer {
  /** Interesting files present in this layer. */
  files: Map<string, LayerFile>;
  /** Paths this layer deletes (whiteouts), as "dir/name". */
  whiteouts: string[];
  /** Directories made opaque by this layer. */
  opaque: string[];
  /** sha256 of the uncompressed tar. */
  diffId: string;
}

/** Reads one layer (any of Debian's compressions, detected by magic) down to what a scan needs. */
export async function scanLayer(source: Readable, what: string): Promise<ScannedLayer> {
  const head = await peek(source, 6);
  const raw = head.stream;
  const kind = compressionOfMagic(head.bytes);
  const tarStream = kind === "none" ? raw : raw.pipe(decompressor(kind, what));
  const hash = new HashingStream();
  tarStream.on("error", (e) => hash.destroy(e));
  tarStream.pipe(hash);
  const layer: ScannedLayer = { files: new Map(), whiteouts: [], opaque: [], diffId: "" };
  await walkTar(
    hash,
    async (info, body) => {
      const base = posix.basename(info.path);
      const dir = posix.dirname(info.path);
      if (base === ".wh..wh..opq") {
        layer.opaque.push(dir === "." ? "" : dir);
        return;
      }
      if (base.startsWith(".wh.")) {
        layer.whiteouts.push(dir === "." ? base.slice(4) : `${dir}/${base.slice(4)}`);
        return;
      }
      if (!isInteresting(info.path)) return;
      if (info.type === "symlink")
        layer.files.set(info.path, { kind: "symlink", target: info.linkname ?? "" });
      else if (info.type === "file") {
        if (info.size > MAX_INTERESTING_FILE)
          throw new BerthError(`${what}: ${info.path} is ${info.size} bytes; refusing it`);
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(c as Buffer);
        layer.files.set(info.path, { kind: "file", data: Buffer.concat(chunks) });
      }
    },
    { ...LAYER_LIMITS, what },
  );
  layer.diffId = hash.digest();
  return layer;
}

/** The first bytes of a stream (for its magic number), and the whole stream still to be read. */
async function peek(stream: Readable, n: number): Promise<{ bytes: Buffer; stream: Readable }> {
  const pass = new PassThrough();
  stream.on("error", (e) => pass.destroy(e));
  stream.pipe(pass);
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const tryRead = () => {
      const chunk = pass.read() as Buffer | null;
      if (chunk === null) return;
      pass.off("readable", tryRead);
      pass.unshift(chunk);
      resolve(chunk.subarray(0, n));
    };
    pass.on("readable", tryRead);
    pass.once("end", () => resolve(Buffer.alloc(0)));
    pass.once("error", reject);
  });
  return { bytes, stream: pass };
}

/** The merged view of the interesting files after each layer, and which layer set each package. */
export interface LayeredResult {
  packages: InventoryPackage[];
  os?: OsRelease;
  layers: LayerRef[];
}

function resolveInView(
  view: Map<string, { file: LayerFile; layer: number }>,
  path: string,
  depth = 0,
): { file: LayerFile & { kind: "file" }; layer: number } | undefined {
  const e = view.get(path);
  if (!e || depth > 8) return undefined;
  if (e.file.kind === "file") return e as { file: LayerFile & { kind: "file" }; layer: number };
  const target = e.file.target.startsWith("/")
    ? e.file.target.slice(1)
    : posix.normalize(posix.join(posix.dirname(path), e.file.target));
  return resolveInView(view, target, depth + 1);
}

function packagesOf(view: Map<string, { file: LayerFile; layer: number }>): InstalledPackage[] {
  const out: InstalledPackage[] = [];
  const status = resolveInView(view, "var/lib/dpkg/status");
  if (status) out.push(...parseStatusText(status.file.data.toString("utf8"), "var/lib/dpkg/status"));
  for (const [path, e] of [...view.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!path.startsWith("var/lib/dpkg/status.d/") || e.file.kind !== "file") continue;
    if (/\.(md5sums|list|conffiles)$/.test(path) || posix.basename(path).startsWith(".")) continue;
    out.push(...parseStatusText(e.file.data.toString("utf8"), path));
  }
  return out;
}

/** Applies layers in order (lowest first) and attributes packages to layers. */
export function mergeLayers(layers: ScannedLayer[], refs: LayerRef[]): LayeredResult {
  const view = new Map<string, { file: LayerFile; layer: number }>();
  const introducedAt = new Map<string, number>();
  let previous = new Set<string>();
  layers.forEach((layer, i) => {
    for (const dir of layer.opaque)
      for (const k of [...view.keys()])
        if ((dir === "" || k.startsWith(`${dir}/`)) && view.get(k)!.layer < i) view.delete(k);
    for (const w of layer.whiteouts)
      for (const k of [...view.keys()]) if (k === w || k.startsWith(`${w}/`)) view.delete(k);
    for (const [path, file] of layer.files) view.set(path, { file, layer: i });
    const pkgs = packagesOf(view);
    const now = new Set(pkgs.map((p) => `${p.name}\0${p.architecture}\0${p.version}`));
    for (const key of now) if (!previous.has(key)) introducedAt.set(key, i);
    previous = now;
  });
  const final = packagesOf(view);
  const osFile = resolveInView(view, "etc/os-release") ?? resolveInView(view, "usr/lib/os-release");
  return {
    packages: final.map((p) => {
      const at = introducedAt.get(`${p.name}\0${p.architecture}\0${p.version}`);
      return at === undefined ? p : { ...p, layer: refs[at] };
    }),
    os: osFile ? parseOsRelease(osFile.file.data.toString("utf8")) : undefined,
    layers: refs,
  };
}

interface OciDescriptor {
  mediaType?: string;
  digest: string;
  size?: number;
}

function blobName(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new BerthError(`unsupported or malformed digest "${digest}"`);
  return `blobs/sha256/${m[1]}`;
}

function parseJson<T>(buf: Buffer | undefined, what: string): T {
  if (!buf) throw new BerthError(`${what} is missing`);
  try {
    return JSON.parse(buf.toString("utf8")) as T;
  } catch {
    throw new BerthError(`${what} is not valid JSON`);
  }
}

interface OciDocument {
  manifests?: (OciDescriptor & { platform?: { architecture?: string } })[];
  layers?: OciDescriptor[];
  config?: OciDescriptor;
}

interface ImageConfig {
  rootfs?: { diff_ids?: string[] };
  history?: { created_by?: string; empty_layer?: boolean }[];
}

/** The layer blobs of an image (from manifest.json or index.json), in order, with their config. */
export async function imageLayerList(
  read: (name: string) => Promise<Buffer | undefined>,
  what: string,
): Promise<{ layers: string[]; config?: ImageConfig }> {
  const docker = await read("manifest.json");
  if (docker) {
    const m = parseJson<{ Config?: string; Layers?: string[] }[]>(docker, `${what} manifest.json`);
    const first = Array.isArray(m) ? m[0] : undefined;
    if (!first?.Layers) throw new BerthError(`${what}: manifest.json lists no layers`);
    const config = first.Config
      ? parseJson<ImageConfig>(await read(safeRel(first.Config)), `${what} ${first.Config}`)
      : undefined;
    return { layers: first.Layers.map(safeRel), config };
  }
  const index = parseJson<{ manifests?: OciDescriptor[] }>(
    await read("index.json"),
    `${what} index.json (neither manifest.json nor index.json found)`,
  );
  let desc = index.manifests?.[0];
  if (!desc) throw new BerthError(`${what}: index.json lists no manifests`);
  // Follow nested indexes (multi-platform images) to the amd64 manifest.
  for (let depth = 0; depth < 4; depth++) {
    const doc: OciDocument = parseJson<OciDocument>(
      await read(blobName(desc.digest)),
      `${what} ${desc.digest}`,
    );
    if (doc.manifests) {
      desc = doc.manifests.find((x) => x.platform?.architecture === "amd64") ?? doc.manifests[0];
      if (!desc) throw new BerthError(`${what}: empty image index`);
      continue;
    }
    const config = doc.config
      ? parseJson<ImageConfig>(await read(blobName(doc.config.digest)), `${what} config`)
      : undefined;
    return { layers: (doc.layers ?? []).map((l) => blobName(l.digest)), config };
  }
  throw new BerthError(`${what}: image indexes nested too deep`);
}

function refsFor(layerNames: string[], config: ImageConfig | undefined, scanned: ScannedLayer[]): LayerRef[] {
  const history = (config?.history ?? []).filter((h) => !h.empty_layer);
  return layerNames.map((name, i) => ({
    index: i,
    digest: /sha256\/([0-9a-f]{64})/.test(name) ? `sha256:${/([0-9a-f]{64})/.exec(name)![1]}` : name,
    diffId: `sha256:${scanned[i]!.diffId}`,
    createdBy: history[i]?.created_by,
  }));
}

function checkDiffIds(config: ImageConfig | undefined, scanned: ScannedLayer[], what: string): void {
  const ids = config?.rootfs?.diff_ids;
  if (!ids) return;
  if (ids.length !== scanned.length)
    throw new BerthError(`${what}: config lists ${ids.length} layers, the manifest ${scanned.length}`);
  ids.forEach((id, i) => {
    if (id !== `sha256:${scanned[i]!.diffId}`)
      throw new BerthError(`${what}: layer ${i} does not match its diff_id (corrupt or tampered layer)`);
  });
}

/** An OCI image layout directory. */
export async function scanOciLayout(dir: string): Promise<LayeredResult> {
  const read = (name: string) => readFile(join(dir, safeRel(name))).catch(() => undefined);
  const list = await imageLayerList(read, dir);
  const scanned: ScannedLayer[] = [];
  for (const l of list.layers) {
    const path = join(dir, l);
    await stat(path).catch(() => {
      throw new BerthError(`${dir}: layer ${l} is missing`);
    });
    scanned.push(await scanLayer(createReadStream(path), `${dir}/${l}`));
  }
  checkDiffIds(list.config, scanned, dir);
  return mergeLayers(scanned, refsFor(list.layers, list.config, scanned));
}

function safeRel(name: string): string {
  const n = posix.normalize(name);
  if (n.startsWith("/") || n.startsWith(".."))
    throw new BerthError(`refusing path "${name}" in an image manifest`);
  return n;
}

/**
 * A `docker save` archive as a stream (a file, or the Docker engine's /images/NAME/get): one pass, every
 * file entry that could be a layer is scanned as one while small JSON documents are kept, then the
 * manifest orders them.
 */
export async function scanDockerArchive(source: Readable, what: string): Promise<LayeredResult> {
  const small = new Map<string, Buffer>();
  const layers = new Map<string, ScannedLayer>();
  await walkTar(
    source,
    async (info, body) => {
      if (info.type !== "file") return;
      const layerLike =
        info.path.startsWith("blobs/") || /(^|\/)layer\.tar$|\.tar(\.gz|\.zst)?$/.test(info.path);
      if (!layerLike || info.size < 64 * 1024) {
        // manifest.json, <config>.json, legacy <id>/json and VERSION, repositories, oci-layout, small blobs.
        if (info.size > 16 * 1024 * 1024) return;
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(c as Buffer);
        const buf = Buffer.concat(chunks);
        small.set(info.path, buf);
        // A small blob or layer.tar may still be a (tiny) layer; keep it scannable.
        if (layerLike && !looksLikeJson(buf))
          layers.set(info.path, await scanLayer(bufferStream(buf), `${what} ${info.path}`));
        return;
      }
      layers.set(info.path, await scanLayer(body, `${what} ${info.path}`));
    },
    { maxEntries: 100_000, what },
  );
  const list = await imageLayerList(async (n) => small.get(n), what);
  const scanned = list.layers.map((l) => {
    const s = layers.get(l);
    if (!s) throw new BerthError(`${what}: layer ${l} named in the manifest is not in the archive`);
    return s;
  });
  checkDiffIds(list.config, scanned, what);
  return mergeLayers(scanned, refsFor(list.layers, list.config, scanned));
}

function looksLikeJson(b: Buffer): boolean {
  const c = b.subarray(0, 1).toString();
  return c === "{" || c === "[";
}

function bufferStream(b: Buffer): Readable {
  const p = new PassThrough();
  p.end(b);
  return p;
}
