// The tiny image baked into every Berth OS image for the readiness check: busybox from Debian's
// busybox-static package, as a single layer, running as nobody.

import { BerthError } from "../common/errors.ts";
import { readDebFile } from "../pkg/deb.ts";
import { type BuiltImage, buildImageArchive, buildLayer, type LayerEntry } from "./oci.ts";

export const CHECK_IMAGE = { repository: "berth/busybox", tag: "latest" };

const APPLETS = [
  "sh",
  "echo",
  "cat",
  "ls",
  "sleep",
  "true",
  "false",
  "id",
  "hostname",
  "ps",
  "sysctl",
  "uname",
  "wc",
  "env",
  "ip",
  "wget",
  "nc",
  "top",
  "grep",
];

/** Builds the image archive from a busybox-static .deb. */
export async function buildBusyboxImage(debPath: string, mtime: number): Promise<BuiltImage> {
  const busybox = await readDebFile(debPath, "usr/bin/busybox");
  if (!busybox) throw new BerthError(`${debPath} has no usr/bin/busybox; is it busybox-static?`);
  const entries: LayerEntry[] = [
    { path: "bin", type: "directory", mode: 0o755 },
    { path: "bin/busybox", type: "file", mode: 0o755, data: busybox },
    ...APPLETS.map((a) => ({ path: `bin/${a}`, type: "symlink" as const, mode: 0o777, target: "busybox" })),
    { path: "etc", type: "directory", mode: 0o755 },
    {
      path: "etc/passwd",
      type: "file",
      mode: 0o644,
      data: Buffer.from("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
    },
    { path: "etc/group", type: "file", mode: 0o644, data: Buffer.from("root:x:0:\nnogroup:x:65534:\n") },
    { path: "tmp", type: "directory", mode: 0o1777 },
  ];
  const layer = await buildLayer(entries, mtime);
  return buildImageArchive(
    {
      ...CHECK_IMAGE,
      layers: [layer],
      created: new Date(mtime * 1000).toISOString(),
      config: {
        Cmd: ["/bin/sh"],
        User: "65534:65534",
        Env: ["PATH=/bin"],
        Labels: { "org.opencontainers.image.source": "debian:busybox-static" },
      },
    },
    mtime,
  );
}
