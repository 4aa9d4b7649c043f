// `image` targets: a container image as an OCI layout (a `berth images build` output directory, or a
// tar of one), published by its manifest digest as images/<repository>/<hex>.tar, with its SBOMs as
// images/<repository>/<hex>.cdx.json / .spdx.json. The SBOMs come from the layout's OCI 1.1 referrer
// artifacts (manifests whose subject is the image) or from --sbom; an image without one is refused.
// A directory is packed into a deterministic tar (sorted names, zero times and owners) that `docker
// load` takes as it is.

import { createReadStream, createWriteStream } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { BerthError, UsageError } from "../../common/errors.ts";
import { extractTar } from "../../common/tar.ts";
import type { NewTarget } from "../targets.ts";

export type SbomFormat = "cyclonedx" | "spdx";

export interface ImageCustom {
  kind: "image";
  member: "image";
  repository: string;
  tag?: string;
  /** The image manifest's digest, "sha256:<hex>". */
  digest: string;
  /** SBOM targets by format. */
  sboms: Partial<Record<SbomFormat, string>>;
  [k: string]: unknown;
}

export interface ImageSbomCustom {
  kind: "image";
  member: "sbom";
  format: SbomFormat;
  digest: string;
  /** The image target this SBOM describes. */
  image: string;
  [k: string]: unknown;
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}
interface ManifestDoc {
  mediaType?: string;
  artifactType?: string;
  subject?: Descriptor;
  config?: Descriptor;
  layers?: Descriptor[];
}

const IMAGE_MANIFEST = new Set([
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
]);

function formatOf(mediaType: string | undefined): SbomFormat | undefined {
  if (!mediaType) return undefined;
  if (/cyclonedx/i.test(mediaType)) return "cyclonedx";
  if (/spdx/i.test(mediaType)) return "spdx";
  return undefined;
}

async function readJsonIn<T>(root: string, rel: string): Promise<T> {
  try {
    return JSON.parse(await readFile(join(root, rel), "utf8")) as T;
  } catch (e) {
    throw new BerthError(
      `not an OCI layout: ${rel} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

const blob = (digest: string) => {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new BerthError(`not a sha256 digest: ${digest}`);
  return `blobs/sha256/${m[1]}`;
};

/** "docker.io/berth/nginx:1.26" -> berth/nginx, 1.26. */
export function parseImageRef(ref: string): { repository: string; tag?: string } {
  let r = ref.replace(/@sha256:[0-9a-f]{64}$/, "");
  r = r.replace(/^docker\.io\//, "").replace(/^library\//, "");
  const slash = r.lastIndexOf("/");
  const colon = r.lastIndexOf(":");
  return colon > slash ? { repository: r.slice(0, colon), tag: r.slice(colon + 1) } : { repository: r };
}

/** Packs a directory into a tar with sorted names, zero times and root ownership. */
async function packDirectory(dir: string, out: string): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(out));
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const st = await lstat(p);
      const rel = relative(dir, p);
      const common = {
        name: rel,
        mtime: new Date(0),
        uid: 0,
        gid: 0,
        uname: "",
        gname: "",
        mode: st.mode & 0o777,
      };
      if (st.isDirectory()) {
        pack.entry({ ...common, type: "directory" });
        await walk(p);
      } else if (st.isFile()) {
        await new Promise<void>((resolve, reject) => {
          const entry = pack.entry({ ...common, type: "file", size: st.size }, (e) =>
            e ? reject(e) : resolve(),
          );
          createReadStream(p).on("error", reject).pipe(entry);
        });
      } else throw new BerthError(`${p}: an OCI layout holds only files and directories`);
    }
  };
  await walk(dir);
  pack.finalize();
  await done;
}

export interface ImageOptions {
  /** Repository name for the targets when the layout does not say (berth/nginx). */
  repository?: string;
  /** Which image when the layout holds several ("sha256:..."). */
  digest?: string;
  /** SBOM files to publish besides (or instead of) the layout's referrers. */
  sboms?: string[];
  work: string;
}

export async function describeImage(path: string, o: ImageOptions): Promise<NewTarget[]> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) throw new UsageError(`no such file or directory: ${path}`);
  let layout = path;
  let archive = path;
  if (st.isFile()) {
    layout = join(o.work, "layout");
    await extractTar(createReadStream(path), layout, { what: path, keepTimes: false });
  } else {
    archive = join(o.work, "image.tar");
    await packDirectory(path, archive);
  }
  const index = await readJsonIn<{ manifests?: Descriptor[] }>(layout, "index.json");
  const entries = index.manifests ?? [];
  const docs = await Promise.all(
    entries.map(async (d) => ({ d, doc: await readJsonIn<ManifestDoc>(layout, blob(d.digest ?? "")) })),
  );
  const images = docs.filter(
    ({ d, doc }) =>
      IMAGE_MANIFEST.has(d.mediaType ?? doc.mediaType ?? "") && !doc.subject && !doc.artifactType,
  );
  const chosen = o.digest ? images.filter(({ d }) => d.digest === o.digest) : images;
  if (chosen.length !== 1)
    throw new UsageError(
      chosen.length
        ? `${path} holds ${chosen.length} images (${chosen.map(({ d }) => d.digest).join(", ")}); pick one with --digest`
        : `${path} holds no image manifest${o.digest ? ` with digest ${o.digest}` : ""}`,
    );
  const image = chosen[0]!.d;
  const digest = image.digest!;
  const hex = digest.slice("sha256:".length);
  const ref = parseImageRef(
    o.repository ??
      image.annotations?.["io.containerd.image.name"] ??
      image.annotations?.["org.opencontainers.image.base.name"] ??
      "",
  );
  if (!ref.repository) throw new UsageError(`${path} does not name its repository; give --image-name NAME`);
  const tag = ref.tag ?? image.annotations?.["org.opencontainers.image.ref.name"];
  const base = `images/${ref.repository}/${hex}`;

  const sbomFiles: { format: SbomFormat; file: string }[] = [];
  for (const { doc } of docs)
    if (doc.subject?.digest === digest)
      for (const l of doc.layers ?? []) {
        const format = formatOf(l.mediaType) ?? formatOf(doc.artifactType);
        if (format && l.digest) sbomFiles.push({ format, file: join(layout, blob(l.digest)) });
      }
  for (const f of o.sboms ?? []) {
    let doc: { bomFormat?: string; spdxVersion?: string };
    try {
      doc = JSON.parse(await readFile(f, "utf8")) as typeof doc;
    } catch (e) {
      throw new BerthError(`${f}: not a JSON SBOM (${(e as Error).message.split("\n")[0]})`);
    }
    const format = doc.bomFormat === "CycloneDX" ? "cyclonedx" : doc.spdxVersion ? "spdx" : undefined;
    if (!format) throw new BerthError(`${f}: neither a CycloneDX nor an SPDX JSON document`);
    sbomFiles.push({ format, file: f });
  }
  if (!sbomFiles.length)
    throw new BerthError(
      `${path} has no SBOM (no referrer artifact for ${digest} in the layout); give --sbom FILE`,
    );

  const sboms: ImageCustom["sboms"] = {};
  const out: NewTarget[] = [];
  for (const s of sbomFiles) {
    if (sboms[s.format]) continue;
    const name = `${base}.${s.format === "cyclonedx" ? "cdx" : "spdx"}.json`;
    sboms[s.format] = name;
    const custom: ImageSbomCustom = {
      kind: "image",
      member: "sbom",
      format: s.format,
      digest,
      image: `${base}.tar`,
    };
    out.push({ name, file: s.file, custom });
  }
  const custom: ImageCustom = {
    kind: "image",
    member: "image",
    repository: ref.repository,
    ...(tag ? { tag } : {}),
    digest,
    sboms,
  };
  out.unshift({ name: `${base}.tar`, file: archive, custom });
  return out;
}
