// What the agent reads from its node, each through the part that owns it: packages, kernels and the
// release through src/scan (the same inventory `berth scan host` reads), containers through the Docker
// engine client, the hardening score through src/harden, live patches from src/patch's journals and
// /sys/kernel/livepatch, and the update state from `berth update status`.

import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { docker } from "../common/docker.ts";
import { profileNamed, runRules, score } from "../harden/engine.ts";
import { openTarget } from "../harden/target.ts";
import { livepatches } from "../patch/klp.ts";
import { patchStatus } from "../patch/lib.ts";
import { scanRoot } from "../scan/targets.ts";
import type {
  Container,
  HardenState,
  Kernel,
  LivePatch,
  OsInfo,
  Package,
  UpdateStatus,
} from "../server/api-schemas.ts";
import { berthJson, errorOf } from "./berth-command.ts";
import { updateStatusFrom } from "./update-status.ts";

export interface HostInventory {
  hostname: string;
  release: string | null;
  os?: OsInfo;
  kernels: Kernel[];
  packages: Package[];
}

/** KEY=value lines (os-release, Berth's release file). */
function keyValues(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    for (const line of readFileSync(path, "utf8").split("\n")) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
      if (m) out[m[1]!] = m[2]!.replace(/^"(.*)"$/, "$1");
    }
  } catch {}
  return out;
}

/** The Berth release the node runs, or the distribution's version on another Debian host. */
export function releaseOf(os: OsInfo | undefined, root = "/"): string | null {
  try {
    // berth-base's update.json (src/os/update-files.ts) names the release of a Berth OS image.
    const v = (JSON.parse(readFileSync(`${root}usr/lib/berth/update.json`, "utf8")) as { version?: unknown })
      .version;
    if (typeof v === "string" && v) return v.slice(0, 64);
  } catch {}
  const berth = keyValues(`${root}usr/lib/berth/release`);
  const v = berth.BERTH_RELEASE_VERSION ?? berth.BERTH_RELEASE ?? berth.RELEASE;
  if (v) return v;
  if (!os) return null;
  return [os.id, os.versionId].filter(Boolean).join(" ") || null;
}

export async function collectInventory(): Promise<HostInventory> {
  const inv = await scanRoot("/", "host");
  const os: OsInfo | undefined = inv.os
    ? {
        id: inv.os.id,
        ...(inv.os.versionId ? { versionId: inv.os.versionId } : {}),
        ...(inv.os.codename ? { codename: inv.os.codename } : {}),
        ...(inv.os.prettyName ? { prettyName: inv.os.prettyName } : {}),
      }
    : undefined;
  return {
    hostname: hostname(),
    release: releaseOf(os),
    ...(os ? { os } : {}),
    kernels: inv.kernels.map((k) => ({
      release: k.release,
      ...(k.upstream ? { upstream: k.upstream } : {}),
      ...(k.package ? { package: k.package } : {}),
      ...(k.packageVersion ? { packageVersion: k.packageVersion } : {}),
      running: k.running,
    })),
    packages: inv.packages.map((p) => ({
      name: p.name,
      version: p.version,
      architecture: p.architecture,
      status: p.status,
      source: p.source,
      sourceVersion: p.sourceVersion,
    })),
  };
}

/** Running containers and their images; none when no engine answers. */
export async function collectContainers(): Promise<Container[]> {
  try {
    const list = await docker.listContainers();
    return list
      .map((c) => ({
        id: c.Id,
        name: (c.Names[0] ?? c.Id.slice(0, 12)).replace(/^\//, ""),
        image: c.Image,
        imageId: c.ImageID,
        state: c.State,
      }))
      .sort((a, b) => (a.id < b.id ? -1 : 1));
  } catch {
    return [];
  }
}

/** `berth harden check` of the host, as the report carries it. */
export async function collectHarden(profileName: string, advisoryDb?: string): Promise<HardenState> {
  const profile = profileNamed(profileName);
  if (!profile) throw new Error(`unknown hardening profile ${profileName}`);
  const t = await openTarget("host", { db: advisoryDb });
  try {
    const outcomes = runRules(t.facts, profile);
    const s = score(outcomes);
    return {
      profile: profile.name,
      score: s.score,
      rules: s.rules,
      failing: outcomes
        .filter((o) => o.result.status === "fail")
        .map((o) => o.rule.id)
        .sort(),
      checkedAt: new Date().toISOString(),
    };
  } finally {
    t.close();
  }
}

/** Live patches in effect: library layers by library, and kernel livepatches. */
export function collectPatches(): LivePatch[] {
  const out: LivePatch[] = [];
  const libs = new Map<string, Set<number>>();
  try {
    for (const j of patchStatus())
      for (const layer of j.layers) {
        const name = `${layer.lib}@${layer.sha256.slice(0, 12)}`;
        libs.set(name, (libs.get(name) ?? new Set()).add(j.pid));
      }
  } catch {}
  for (const [name, pids] of [...libs].sort())
    out.push({ kind: "lib", name, detail: `${pids.size} process${pids.size === 1 ? "" : "es"}` });
  try {
    for (const k of livepatches())
      out.push({
        kind: "kernel",
        name: k.name,
        detail: k.transition ? "transition" : k.enabled ? "enabled" : "disabled",
      });
  } catch {}
  return out;
}

/** True on a Berth OS node booted from an A/B slot (the kernel command line names the root slot). */
function onBerthSlots(): boolean {
  try {
    return /(^|\s)berth\.root=/.test(readFileSync("/proc/cmdline", "utf8"));
  } catch {
    return false;
  }
}

/** The node's A/B update state (`berth update status`); idle with no slots on a host without slots. */
export async function collectUpdate(): Promise<UpdateStatus> {
  const idle: UpdateStatus = { state: "idle", booted: null, slots: [], lastAttempt: null };
  if (!onBerthSlots()) return idle;
  const r = await berthJson(["update", "status", "--json"], 120_000);
  if (r.code !== 0 || r.json === undefined)
    return { ...idle, reason: `berth update status: ${errorOf(r)}`.slice(0, 1024) };
  return updateStatusFrom(r.json);
}
