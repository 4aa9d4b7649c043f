// Shared OS release fixtures (issue 13): two builds of the default profile, published in one signed
// repository that the images trust, for every test that needs a Berth release — advisories (v1 -> v2),
// the fleet agent booted in QEMU, Kubernetes updates driven by the operator, A/B updates.
//
//   const v1 = await releaseV1();   // a `berth os build` output directory: profiles/container-host.yaml
//                                   // against trixie only, release 2026.12.1
//   const v2 = await releaseV2();   // against trixie, trixie-updates and trixie-security, plus the package
//                                   // "tree", a changed file in /usr (net.core.rmem_max in
//                                   // /usr/lib/sysctl.d/60-berth.conf) and one /etc migration
//                                   // (docker's log max-size 10m -> 20m), release 2026.12.2
//   // Both carry Node.js 24 and Berth (/usr/bin/berth) and an update: key: the trusted root of the
//   // release repository below and the address http://10.0.2.2:PORT/ (PORT = releasePort()).
//   const key = await releaseSshKey();        // private key of the images' user "berth" (ssh -i key)
//   const repo = await releaseRepository();   // { dir, trustedRoot }: a publisher directory with v1 and
//   //   v2 published (targets os/2026.12.1/..., os/2026.12.2/...); berth repo add/publish work on it
//   //   (pick target names no other test uses; publishing from several files at once is safe)
//   const served = await serveReleases();     // serves repo on 127.0.0.1:releasePort() in this process
//   //   served.guestUrl   the address a guest uses (http://10.0.2.2:PORT/); when another test file
//   //                     already serves on the baked port, this one gets a free port and
//   //                     served.baked is false: pass `berth update --repository <guestUrl>` then
//   //   await served.close()
//
// Builds take minutes; each fixture is built once per test run (sharedFixture) and waits for a build
// another test file started. To keep the root images cacheable across runs (berth os build reuses a
// root compressed from an identical tree), the repository keys, the SSH key and the port are made once
// and kept in Berth's cache ($BERTH_CACHE/test/os-releases), so two runs bake the same bytes.

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { cp } from "node:fs/promises";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { freePort } from "../../src/os/qemu.ts";
import { initRepository } from "../../src/repo/publish.ts";
import { type ServedRepository, serveRepository } from "../../src/repo/serve.ts";
import { berth, ROOT, runSync, sharedFixture } from "../helpers.ts";

export const V1 = "2026.12.1";
export const V2 = "2026.12.2";
/** The package v2 adds and the sysctl it changes (the "visible difference"). */
export const V2_EXTRA_PACKAGE = "tree";
export const V2_SYSCTL = { key: "net.core.rmem_max", value: "8388608" };
export const V2_MIGRATION = "2026.12.2-docker-log-size";

const CACHE = process.env.BERTH_CACHE || "/var/cache/berth";
const KEPT = join(CACHE, "test", "os-releases");

interface Kept {
  /** An initialized repository (keys, 1.root.json) copied for each run. */
  template: string;
  sshKey: string;
  port: number;
}

/** The parts kept across runs, made on first use (atomically: a half-made one is never used). */
async function kept(): Promise<Kept> {
  const template = join(KEPT, "repo");
  const sshKey = join(KEPT, "id_ed25519");
  const portFile = join(KEPT, "port");
  const rootFile = join(template, "repository/metadata/1.root.json");
  const fresh = () => {
    try {
      const expires = Date.parse(
        (JSON.parse(readFileSync(rootFile, "utf8")) as { signed: { expires: string } }).signed.expires,
      );
      return expires - Date.now() > 30 * 86400_000 && existsSync(sshKey) && existsSync(portFile);
    } catch {
      return false;
    }
  };
  if (!fresh()) {
    const tmp = `${KEPT}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await initRepository(join(tmp, "repo"));
    const k = runSync("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "berth-test",
      "-f",
      join(tmp, "id_ed25519"),
    ]);
    if (k.code !== 0) throw new Error(`ssh-keygen: ${k.stderr}`);
    writeFileSync(join(tmp, "port"), `${await freePort()}\n`);
    const old = `${KEPT}.old-${process.pid}`;
    if (existsSync(KEPT)) renameSync(KEPT, old);
    mkdirSync(join(KEPT, ".."), { recursive: true });
    renameSync(tmp, KEPT);
    rmSync(old, { recursive: true, force: true });
  }
  return { template, sshKey, port: Number(readFileSync(portFile, "utf8").trim()) };
}

/** The host port the images' baked repository address names (guests reach it as 10.0.2.2). */
export async function releasePort(): Promise<number> {
  return (await kept()).port;
}

/** The private SSH key of the images' user "berth". */
export async function releaseSshKey(): Promise<string> {
  const dir = await sharedFixture("os-release-ssh", async (d) => {
    const k = await kept();
    await cp(k.sshKey, join(d, "id_ed25519"));
    await cp(`${k.sshKey}.pub`, join(d, "id_ed25519.pub"));
  });
  return join(dir, "id_ed25519");
}

/** The run's release repository before anything is published: the kept keys, copied. */
async function emptyReleaseRepository(): Promise<{ dir: string; trustedRoot: string }> {
  const fixture = await sharedFixture("os-release-repo", async (d) => {
    await cp((await kept()).template, join(d, "repo"), { recursive: true });
  });
  const dir = join(fixture, "repo");
  return { dir, trustedRoot: join(dir, "repository/metadata/1.root.json") };
}

/**
 * The default profile turned into v1's or v2's release profile, written into `dir` (for releases
 * derived from them).
 */
export function writeReleaseProfile(dir: string, which: "v1" | "v2"): Promise<string> {
  return releaseProfile(dir, { security: which === "v2", v2: which === "v2" });
}

async function releaseProfile(dir: string, o: { security: boolean; v2: boolean }): Promise<string> {
  const { trustedRoot } = await emptyReleaseRepository();
  const port = await releasePort();
  const doc = parseDocument(readFileSync(join(ROOT, "profiles/container-host.yaml"), "utf8"));
  doc.setIn(["archive", "updates"], o.security);
  doc.setIn(["archive", "security"], o.security);
  doc.set("update", {
    repository: `http://10.0.2.2:${port}/`,
    root: trustedRoot,
    ...(o.v2
      ? {
          migrations: [
            {
              id: V2_MIGRATION,
              up: `sed -i 's/"max-size": "10m"/"max-size": "20m"/' /etc/docker/daemon.json`,
              down: `sed -i 's/"max-size": "20m"/"max-size": "10m"/' /etc/docker/daemon.json`,
            },
          ],
        }
      : {}),
  });
  if (o.v2) {
    doc.addIn(["packages"], V2_EXTRA_PACKAGE);
    doc.setIn(["sysctls", V2_SYSCTL.key], Number(V2_SYSCTL.value));
  }
  const path = join(dir, "profile.yaml");
  writeFileSync(path, doc.toString());
  return path;
}

async function build(profile: string, out: string, version: string): Promise<void> {
  const key = await releaseSshKey();
  const r = await berth([
    "os",
    "build",
    profile,
    "--out",
    out,
    "--no-baseline",
    "--release-version",
    version,
    "--ssh-key",
    `${key}.pub`,
    "-q",
  ]);
  if (r.code !== 0) throw new Error(`berth os build ${version}: ${r.stderr.trim()}`);
}

/** Release v1 (2026.12.1): the default profile against trixie only. */
export async function releaseV1(): Promise<string> {
  const dir = await sharedFixture("os-release-v1", async (d) => {
    await build(await releaseProfile(d, { security: false, v2: false }), join(d, "out"), V1);
  });
  return join(dir, "out");
}

/** Release v2 (2026.12.2): trixie with updates and security, an extra package, a changed /usr file. */
export async function releaseV2(): Promise<string> {
  const dir = await sharedFixture("os-release-v2", async (d) => {
    await build(await releaseProfile(d, { security: true, v2: true }), join(d, "out"), V2);
  });
  return join(dir, "out");
}

/** The run's release repository with v1 and v2 published. */
export async function releaseRepository(): Promise<{ dir: string; trustedRoot: string }> {
  const repo = await emptyReleaseRepository();
  await sharedFixture("os-release-published", async () => {
    for (const out of [await releaseV1(), await releaseV2()]) {
      const r = await berth(["repo", "add", repo.dir, "os-release", out, "-q"]);
      if (r.code !== 0) throw new Error(`berth repo add ${out}: ${r.stderr.trim()}`);
    }
    const p = await berth(["repo", "publish", repo.dir, "-q"]);
    if (p.code !== 0) throw new Error(`berth repo publish: ${p.stderr.trim()}`);
  });
  return repo;
}

export interface ServedReleases extends ServedRepository {
  /** What a guest under QEMU user networking uses. */
  guestUrl: string;
  port: number;
  /** True when served on the port baked into the images (no --repository needed). */
  baked: boolean;
}

/** Serves the release repository on the baked port, or on a free one when that port is taken. */
export async function serveReleases(): Promise<ServedReleases> {
  const { dir } = await releaseRepository();
  const port = await releasePort();
  const tree = join(dir, "repository");
  let served: ServedRepository;
  let baked = true;
  try {
    served = await serveRepository(tree, "127.0.0.1", port);
  } catch {
    served = await serveRepository(tree, "127.0.0.1", 0);
    baked = false;
  }
  const actual = Number(new URL(served.url).port);
  return { ...served, guestUrl: `http://10.0.2.2:${actual}/`, port: actual, baked };
}
