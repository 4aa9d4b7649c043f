// Releases for the update tests beyond the shared v1 and v2 (test/shared/os-releases.ts):
//   v3 (2026.12.3): v2's profile with a health check that fails on purpose and an /etc migration of its
//     own, built for real (gzip root image: the compression does not matter to the update, and gzip
//     compresses several times faster than xz);
//   v4 (2026.12.4): v2's root and kernel with its initramfs cut short, so the kernel can mount no root;
//   v5 (2026.12.5): v2's files as another release, for rollout waves.

import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { sha256File } from "../../src/common/hash.ts";
import type { Manifest } from "../../src/os/manifest.ts";
import { berth, sharedFixture } from "../helpers.ts";
import { releaseSshKey, releaseV2, writeReleaseProfile } from "../shared/os-releases.ts";

export const V3 = "2026.12.3";
export const V4 = "2026.12.4";
export const V5 = "2026.12.5";
export const V3_MIGRATION = "2026.12.3-motd";

/** v3: v2's profile with a health check that fails and an /etc migration of its own, built for real. */
export async function buildV3(): Promise<string> {
  const dir = await sharedFixture("update-release-v3", async (d) => {
    const doc = parseDocument(readFileSync(await writeReleaseProfile(d, "v2"), "utf8"));
    doc.setIn(["update", "health", "commands"], ["echo 'v3 is broken on purpose' >&2; exit 1"]);
    doc.setIn(["image", "compression"], "gzip");
    doc.addIn(["update", "migrations"], {
      id: V3_MIGRATION,
      up: "echo 'Berth 2026.12.3' > /etc/motd",
      down: "rm -f /etc/motd",
    });
    writeFileSync(join(d, "profile.yaml"), doc.toString());
    const key = await releaseSshKey();
    const r = await berth([
      "os",
      "build",
      join(d, "profile.yaml"),
      "--out",
      join(d, "out"),
      "--no-baseline",
      "--release-version",
      V3,
      "--ssh-key",
      `${key}.pub`,
      "-q",
    ]);
    if (r.code !== 0) throw new Error(`building v3: ${r.stderr}`);
  });
  return join(dir, "out");
}

/**
 * A release derived from v2's build without building: v2's root and kernel under another version, as
 * published (the image inside still says v2; these releases are never booted to health). With
 * breakInitramfs (v4) the initramfs is cut short, so the kernel cannot mount any root; without it (v5)
 * it is a release to check waves against.
 */
export async function deriveRelease(
  work: string,
  version: string,
  o: { breakInitramfs?: boolean },
): Promise<string> {
  const v2 = await releaseV2();
  const out = join(work, `release-${version}`);
  mkdirSync(out);
  const replaced = ["disk.img", "manifest.json", ...(o.breakInitramfs ? ["initrd.img"] : [])];
  for (const f of readdirSync(v2)) if (!replaced.includes(f)) symlinkSync(join(v2, f), join(out, f));
  if (o.breakInitramfs)
    writeFileSync(join(out, "initrd.img"), readFileSync(join(v2, "initrd.img")).subarray(0, 65536));
  const m = JSON.parse(readFileSync(join(v2, "manifest.json"), "utf8")) as Manifest;
  m.releaseVersion = version;
  m.artifacts = await Promise.all(
    m.artifacts
      .filter((a) => a.file !== "disk.img")
      .map(async (a) =>
        o.breakInitramfs && a.file === "initrd.img"
          ? { file: a.file, bytes: 65536, sha256: await sha256File(join(out, "initrd.img")) }
          : a,
      ),
  );
  writeFileSync(join(out, "manifest.json"), JSON.stringify(m, null, 2));
  return out;
}
