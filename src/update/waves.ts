// Rollout waves, as Bottlerocket does them: every node draws a seed from 0 to 2047 once and keeps it; a
// release's signed metadata lists waves (a start time and a share of the fleet), and a node takes the
// release once a wave that covers its seed has started. The same seed keeps a node in the same part of
// every rollout, so the first wave is always the same canary nodes.

import { randomInt } from "node:crypto";
import { join } from "node:path";
import { writeFileAtomic } from "../common/fsutil.ts";
import type { Wave } from "../repo/kinds/os-release.ts";
import { readSeed, stateDir } from "./state.ts";

export const SEED_RANGE = 2048;

/** The node's seed: kept in the update state, drawn at random the first time. */
export async function nodeSeed(dir = stateDir()): Promise<number> {
  const have = readSeed(dir);
  if (have !== undefined) return have;
  const seed = randomInt(SEED_RANGE);
  await writeFileAtomic(join(dir, "seed"), `${seed}\n`);
  return seed;
}

/** Whether a wave of `percent` covers a node with `seed` (seeds 0 .. percent% of 2048). */
export function covers(percent: number, seed: number): boolean {
  return seed * 100 < percent * SEED_RANGE;
}

export interface WaveDecision {
  open: boolean;
  /** The share of the fleet the release is open to now. */
  percent: number;
  /** When the first wave that covers this node starts (if it has not yet). */
  opensAt?: string;
}

/** Whether a release with `waves` is open to a node with `seed` at `now`. No waves: open to all. */
export function waveDecision(waves: readonly Wave[], seed: number, now: Date = new Date()): WaveDecision {
  if (!waves.length) return { open: true, percent: 100 };
  let percent = 0;
  for (const w of waves) if (Date.parse(w.start) <= now.getTime()) percent = Math.max(percent, w.percent);
  if (covers(percent, seed)) return { open: true, percent };
  const next = waves.find((w) => covers(w.percent, seed) && Date.parse(w.start) > now.getTime());
  return { open: false, percent, ...(next ? { opensAt: next.start } : {}) };
}
