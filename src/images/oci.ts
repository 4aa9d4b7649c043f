// Writing container images: deterministic layer tarballs, and an image archive that is both an OCI image
// layout and a `docker save` archive (index.json + manifest.json over the same blobs), so `docker load`,
// `ctr images import` and OCI tools all read it. Hand-written because the format is a handful of JSON
// documents around tar, and no maintained npm library writes both layouts reproducibly.

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { sha256Hex } from "../common/hash.ts";

export interface LayerEntry {
  path: string;
  type: "file" | "directory" | "symlink";
  mode: number;
  data?: Buffer;
  target?: string;
  uid?: number;
  gid?: number;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A layer tarball with sorted entries, fixed times and numeric owners: same input, same bytes. */
export async function buildLayer(entries: LayerEntry[], mtime: number): Promise<Buffer> {
  const pack = tar.pack();
  const out = collect(pack as unknown as Readable);
  const date = new Date(mtime * 1000);
  for (const e of [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    const common = {
      name: e.path,
      mode: e.mode,
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: date,
      uname: "",
      gname: "",
    };
    if (e.type === "directory") pack.entry({ ...common, type: "directory" });
    else if (e.type === "symlink") pack.entry({ ...common, type: "symlink", linkname: e.target });
    else pack.entry({ ...common, type: "file" }, e.data ?? Buffer.alloc(0));
  }
  pack.finalize();
  return out;
}

export interface ImageSpec {
  /** Repository name, e.g. "berth/busybox". */
  repository: string;
  tag: string;
  layers: Buffer[];
  created: string;
  config: ImageConfig;
}

/** The runtime part of an image config (Docker's and OCI's fields; Docker reads Healthcheck too). */
export interface ImageConfig {
  Cmd?: string[];
  Entrypoint?: string[];
  Env?: string[];
  User?: string;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
  StopSignal?: string;
  Healthcheck?: {
    Test: string[];
    Interval?: number;
    Timeout?: number;
    StartPeriod?: number;
    Retries?: number;
  };
}

export interface BuiltImage {
  archive: Buffer;
  manifestDigest: string;
  configDigest: string;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

export const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";
const EMPTY_CONFIG = Buffer.from("{}");

export interface LayerBlob {
  /** The bytes as stored: a plain tar, or gzip of it. */
  data: Buffer;
  mediaType: "application/vnd.oci.image.layer.v1.tar" | "application/vnd.oci.image.layer.v1.tar+gzip";
  /** sha256 hex of the uncompressed tar. */
  diffId: string;
}

/** An artifact that refers to the image (OCI 1.1 `subject`), e.g. an SBOM. */
export interface Referrer {
  artifactType: string;
  data: Buffer;
  title: string;
}

export interface ComposeSpec {
  repository: string;
  tag: string;
  layers: LayerBlob[];
  created: string;
  config: ImageConfig;
  /** Manifest annotations (org.opencontainers.image.*). */
  annotations?: Record<string, string>;
  referrers?: Referrer[];
}

/** An image as its content-addressed blobs and the two top-level indexes (OCI index.json, docker manifest.json). */
export interface ComposedImage {
  blobs: Map<string, Buffer>;
  index: Buffer;
  dockerManifest: Buffer;
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  layers: { digest: string; diffId: string; size: number }[];
  referrers: { artifactType: string; digest: string; blobDigest: string }[];
}

export function composeImage(spec: ComposeSpec): ComposedImage {
  const blobs = new Map<string, Buffer>();
  const put = (data: Buffer) => {
    const d = sha256Hex(data);
    blobs.set(d, data);
    return d;
  };
  const layers = spec.layers.map((l) => ({ digest: put(l.data), diffId: l.diffId, size: l.data.length }));
  const config = json({
    architecture: "amd64",
    os: "linux",
    created: spec.created,
    config: spec.config,
    rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${l.diffId}`) },
    history: spec.layers.map(() => ({ created: spec.created, created_by: "berth images" })),
  });
  const configDigest = put(config);
  const manifest = json({
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: `sha256:${configDigest}`,
      size: config.length,
    },
    layers: spec.layers.map((l, i) => ({
      mediaType: l.mediaType,
      digest: `sha256:${layers[i]!.digest}`,
      size: l.data.length,
    })),
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
  });
  const manifestDigest = put(manifest);
  const ref = `${spec.repository}:${spec.tag}`;
  const manifests: unknown[] = [
    {
      mediaType: MANIFEST_TYPE,
      digest: `sha256:${manifestDigest}`,
      size: manifest.length,
      annotations: {
        "io.containerd.image.name": `docker.io/${ref}`,
        "org.opencontainers.image.ref.name": spec.tag,
      },
    },
  ];
  const referrers: ComposedImage["referrers"] = [];
  if (spec.referrers?.length) {
    const emptyDigest = put(EMPTY_CONFIG);
    for (const r of spec.referrers) {
      const blobDigest = put(r.data);
      const artifact = json({
        schemaVersion: 2,
        mediaType: MANIFEST_TYPE,
        artifactType: r.artifactType,
        config: {
          mediaType: "application/vnd.oci.empty.v1+json",
          digest: `sha256:${emptyDigest}`,
          size: EMPTY_CONFIG.length,
        },
        layers: [
          {
            mediaType: r.artifactType,
            digest: `sha256:${blobDigest}`,
            size: r.data.length,
            annotations: { "org.opencontainers.image.title": r.title },
          },
        ],
        subject: { mediaType: MANIFEST_TYPE, digest: `sha256:${manifestDigest}`, size: manifest.length },
        annotations: { "org.opencontainers.image.created": spec.created },
      });
      const digest = put(artifact);
      referrers.push({ artifactType: r.artifactType, digest, blobDigest });
      manifests.push({
        mediaType: MANIFEST_TYPE,
        digest: `sha256:${digest}`,
        size: artifact.length,
        artifactType: r.artifactType,
        annotations: { "org.opencontainers.image.created": spec.created },
      });
    }
  }
  const index = json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests });
  const dockerManifest = json([
    {
      Config: `blobs/sha256/${configDigest}`,
      RepoTags: [ref],
      Layers: layers.map((l) => `blobs/sha256/${l.digest}`),
    },
  ]);
  return {
    blobs,
    index,
    dockerManifest,
    manifestDigest,
    manifestSize: manifest.length,
    configDigest,
    layers,
    referrers,
  };
}

/** The files of an OCI image layout (plus docker's manifest.json), as layer entries. */
function layoutEntries(c: ComposedImage): LayerEntry[] {
  return [
    { path: "blobs", type: "directory", mode: 0o755 },
    { path: "blobs/sha256", type: "directory", mode: 0o755 },
    ...[...c.blobs].map(([d, data]) => ({
      path: `blobs/sha256/${d}`,
      type: "file" as const,
      mode: 0o644,
      data,
    })),
    { path: "index.json", type: "file", mode: 0o644, data: c.index },
    { path: "manifest.json", type: "file", mode: 0o644, data: c.dockerManifest },
    { path: "oci-layout", type: "file", mode: 0o644, data: json({ imageLayoutVersion: "1.0.0" }) },
  ];
}

/** The image as one tar that is both an OCI layout and a docker-save archive. */
export function archiveOf(c: ComposedImage, mtime: number): Promise<Buffer> {
  return buildLayer(layoutEntries(c), mtime);
}

/** Writes the OCI image layout into `dir` (which must exist and be empty). */
export async function writeLayout(dir: string, c: ComposedImage): Promise<void> {
  for (const e of layoutEntries(c)) {
    if (e.type === "directory") await mkdir(join(dir, e.path), { recursive: true });
    else await writeFile(join(dir, e.path), e.data!);
  }
}

/** An image archive (tar) in OCI layout with a docker-compatible manifest.json. */
export async function buildImageArchive(spec: ImageSpec, mtime: number): Promise<BuiltImage> {
  const c = composeImage({
    ...spec,
    layers: spec.layers.map((data) => ({
      data,
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      diffId: sha256Hex(data),
    })),
  });
  return {
    archive: await archiveOf(c, mtime),
    manifestDigest: c.manifestDigest,
    configDigest: c.configDigest,
  };
}
