// Which release a node should run: the releases the signed repository lists (os/<version>/release.json
// targets), filtered by the version rules, the node's bad list, a pinned or maximum version, the
// migration path and the rollout waves. The choice is a pure function of those inputs.

import { BerthError, UsageError } from "../common/errors.ts";
import { compareReleaseVersions, isReleaseVersion } from "../os/release.ts";
import type { RepoClient } from "../repo/client.ts";
import type { OsReleaseCustom } from "../repo/kinds/os-release.ts";
import { type WaveDecision, waveDecision } from "./waves.ts";

export interface Release {
  version: string;
  /** The release.json target. */
  target: string;
  custom: OsReleaseCustom;
}

/** The repository's releases (after a refresh), newest first; targets that are not releases are skipped. */
export async function listReleases(client: RepoClient): Promise<Release[]> {
  const out: Release[] = [];
  for (const t of await client.targets("os-release")) {
    const c = t.custom as OsReleaseCustom;
    if (c.member !== "release" || typeof c.version !== "string" || !isReleaseVersion(c.version)) continue;
    out.push({ version: c.version, target: t.name, custom: c });
  }
  return out.sort((a, b) => compareReleaseVersions(b.version, a.version));
}

export interface ChoiceInput {
  releases: Release[];
  current: string;
  bad: string[];
  seed: number;
  now?: Date;
  /** An explicit version (berth update apply --version, or PIN= in /etc/berth/update.conf). */
  version?: string;
  /** Never beyond this version (MAX_VERSION=, --max-version). */
  maxVersion?: string;
  ignoreWaves?: boolean;
  allowDowngrade?: boolean;
  /** Take a release recorded as bad. */
  retryBad?: boolean;
}

export interface Skipped {
  version: string;
  why: string;
  /** For a release held by its waves: when it opens to this node. */
  opensAt?: string;
}

export interface Choice {
  release?: Release;
  waves?: WaveDecision;
  /** Newer releases not taken, and why. */
  skipped: Skipped[];
  /** One line for people: what the node will do, or why not. */
  summary: string;
}

/** Picks the release to install. Throws a UsageError only for an explicit version that cannot be taken. */
export function chooseRelease(i: ChoiceInput): Choice {
  const now = i.now ?? new Date();
  const cmp = (a: string, b: string) => compareReleaseVersions(a, b);
  if (i.version) {
    const r = i.releases.find((x) => x.version === i.version);
    if (!r) throw new BerthError(`release ${i.version} is not in the repository`);
    if (cmp(r.version, i.current) === 0)
      return { skipped: [], summary: `release ${r.version} is already running` };
    if (cmp(r.version, i.current) < 0 && !i.allowDowngrade)
      throw new UsageError(`${r.version} is older than the running ${i.current}; add --allow-downgrade`);
    if (i.bad.includes(r.version) && !i.retryBad)
      throw new UsageError(`${r.version} failed on this node before; add --retry to try it again`);
    const path = migrationPath(r, i.current);
    if (path) throw new UsageError(path);
    return { release: r, skipped: [], summary: `release ${r.version} (asked for)` };
  }
  const skipped: Skipped[] = [];
  for (const r of i.releases) {
    if (cmp(r.version, i.current) <= 0) break;
    if (i.maxVersion && cmp(r.version, i.maxVersion) > 0) {
      skipped.push({ version: r.version, why: `newer than the maximum version ${i.maxVersion}` });
      continue;
    }
    if (i.bad.includes(r.version) && !i.retryBad) {
      skipped.push({ version: r.version, why: "failed on this node before (bad)" });
      continue;
    }
    const path = migrationPath(r, i.current);
    if (path) {
      skipped.push({ version: r.version, why: path });
      continue;
    }
    const waves = waveDecision(r.custom.waves ?? [], i.seed, now);
    if (!waves.open && !i.ignoreWaves) {
      skipped.push({
        version: r.version,
        why: `its rollout is open to ${waves.percent}% of the fleet, not yet to this node (seed ${i.seed})`,
        ...(waves.opensAt ? { opensAt: waves.opensAt } : {}),
      });
      continue;
    }
    return {
      release: r,
      waves,
      skipped,
      summary: `release ${r.version} is available (running ${i.current})`,
    };
  }
  const held = skipped.find((s) => s.opensAt);
  return {
    skipped,
    summary: held
      ? `no release to install now; ${held.version} opens to this node at ${held.opensAt}`
      : skipped.length
        ? `no release to install: ${skipped.map((s) => `${s.version} ${s.why}`).join("; ")}`
        : `up to date: ${i.current} is the newest release`,
  };
}

/** Why a release cannot be applied on `current` directly (its minimum starting release), if it cannot. */
function migrationPath(r: Release, current: string): string | undefined {
  const min = r.custom.update?.minimumFrom;
  if (min && isReleaseVersion(min) && compareReleaseVersions(current, min) < 0)
    return `${r.version} must be applied on ${min} or newer; update to ${min} first`;
  return undefined;
}
