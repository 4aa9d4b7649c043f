// Writing container images: deterministic layer tarballs, and an image archive that is both an OCI image
// layout and a `docker save` archive (index.json + manifest.json over the same blobs), so `docker load`,
// `ctr images import` and OCI tools all read it. Hand-written because the format is a handful of JSON
// documents around tar, and no maintained npm library writes both layouts reproducibly.

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
  config: {
    Cmd?: string[];
    Entrypoint?: string[];
    Env?: string[];
    User?: string;
    WorkingDir?: string;
    Labels?: Record<string, string>;
    ExposedPorts?: Record<string, object>;
  };
}

export interface BuiltImage {
  archive: Buffer;
  manifestDigest: string;
  configDigest: string;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

/** An image archive (tar) in OCI layout with a docker-compatible manifest.json. */
export async function buildImageArchive(spec: ImageSpec, mtime: number): Promise<BuiltImage> {
  const layerDigests = spec.layers.map((l) => sha256Hex(l));
  const config = json({
    architecture: "amd64",
    os: "linux",
    created: spec.created,
    config: spec.config,
    rootfs: { type: "layers", diff_ids: layerDigests.map((d) => `sha256:${d}`) },
    history: spec.layers.map(() => ({ created: spec.created, created_by: "berth images" })),
  });
  const configDigest = sha256Hex(config);
  const manifest = json({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: `sha256:${configDigest}`,
      size: config.length,
    },
    layers: spec.layers.map((l, i) => ({
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: `sha256:${layerDigests[i]}`,
      size: l.length,
    })),
  });
  const manifestDigest = sha256Hex(manifest);
  const ref = `${spec.repository}:${spec.tag}`;
  const index = json({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: `sha256:${manifestDigest}`,
        size: manifest.length,
        annotations: {
          "io.containerd.image.name": `docker.io/${ref}`,
          "org.opencontainers.image.ref.name": spec.tag,
        },
      },
    ],
  });
  const dockerManifest = json([
    {
      Config: `blobs/sha256/${configDigest}`,
      RepoTags: [ref],
      Layers: layerDigests.map((d) => `blobs/sha256/${d}`),
    },
  ]);
  const files: LayerEntry[] = [
    { path: "blobs", type: "directory", mode: 0o755 },
    { path: "blobs/sha256", type: "directory", mode: 0o755 },
    { path: `blobs/sha256/${configDigest}`, type: "file", mode: 0o644, data: config },
    { path: `blobs/sha256/${manifestDigest}`, type: "file", mode: 0o644, data: manifest },
    ...spec.layers.map((l, i) => ({
      path: `blobs/sha256/${layerDigests[i]}`,
      type: "file" as const,
      mode: 0o644,
      data: l,
    })),
    { path: "index.json", type: "file", mode: 0o644, data: index },
    { path: "manifest.json", type: "file", mode: 0o644, data: dockerManifest },
    { path: "oci-layout", type: "file", mode: 0o644, data: json({ imageLayoutVersion: "1.0.0" }) },
  ];
  return { archive: await buildLayer(files, mtime), manifestDigest, configDigest };
}
