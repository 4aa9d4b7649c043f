// The consistency model for applying and rolling back a patch, as kpatch and libcare have: nothing is
// switched while any thread has a frame inside code being replaced or restored. Every thread is
// stopped, every stack is walked (unwind.ts); a thread whose innermost frame is inside is single-stepped
// out when a few instructions take it out, and otherwise the process is let go and tried again with
// jittered exponential backoff. After the last attempt Berth gives up and names the blocking functions.

import { getPriority, setPriority } from "node:os";
import { BerthError } from "../common/errors.ts";
import type { PtraceHelper } from "./helper.ts";
import { AddressRanges } from "./ranges.ts";
import type { ProcessUnwinder } from "./unwind.ts";

export interface LabeledRange {
  lo: bigint;
  hi: bigint;
  label: string;
}

export interface CriticalResult {
  pauseNs: number;
  retries: number;
  /** Every stop's stop-to-continue time, the failed attempts included. */
  stops: number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STEP_LIMIT = 64;

/** Why one stopped process cannot be switched now: the thread and the function it is in. */
async function blocker(
  h: PtraceHelper,
  u: ProcessUnwinder,
  threads: { tid: number; regs: bigint[] }[],
  ranges: LabeledRange[],
): Promise<string | undefined> {
  const pairs = ranges.map((r): [bigint, bigint] => [r.lo, r.hi]);
  const set = new AddressRanges(pairs);
  const label = (pc: bigint) =>
    ranges.find((r) => pc >= r.lo && pc < r.hi)?.label ??
    ranges.find((r) => pc - 1n >= r.lo && pc - 1n < r.hi)?.label;
  for (const t of threads) {
    let regs = t.regs;
    let hit = u.findFrameIn(regs, set);
    if (hit?.top) {
      // A few instructions may take it out of the range (a loop calling a small changed function).
      const stepped = await h.step(t.tid, STEP_LIMIT, pairs);
      if (stepped) {
        regs = stepped;
        hit = u.findFrameIn(regs, set);
      }
    }
    if (hit)
      return `thread ${t.tid} in ${label(hit.pc) ?? `0x${hit.pc.toString(16)}`}${hit.scanned ? " (found on its stack)" : ""}`;
  }
  return undefined;
}

/**
 * Stops the process, checks every stack against `ranges`, and runs `work` (the writes) only when no
 * thread is inside; resumes either way. `work` may end the stop itself (the helper's commit) and return
 * the pause. Retries with backoff; throws naming the blockers at the end.
 */
export async function whenNoThreadInside(
  h: PtraceHelper,
  pid: number,
  u: ProcessUnwinder,
  ranges: LabeledRange[],
  work: () => Promise<number | undefined>,
  attempts: number,
): Promise<CriticalResult> {
  const stops: number[] = [];
  const blockers: string[] = [];
  u.warmUp(new AddressRanges(ranges.map((r): [bigint, bigint] => [r.lo, r.hi])));
  u.open();
  // The stack walk runs here, in Node, while the process is stopped: it should not queue behind the
  // host's other work either.
  const niceness = getPriority();
  try {
    setPriority(-10);
  } catch {}
  try {
    for (let attempt = 0; ; attempt++) {
      const threads = await h.stop(pid);
      let busy: string | undefined;
      let resumed: number | undefined;
      try {
        busy = await blocker(h, u, threads, ranges);
        if (!busy) resumed = await work();
      } catch (e) {
        stops.push(await h.resume().catch(() => 0));
        throw e;
      }
      const ns = resumed ?? (await h.resume());
      stops.push(ns);
      if (!busy) return { pauseNs: ns, retries: attempt, stops };
      const where = busy.replace(/^thread \d+ in /, "");
      if (!blockers.includes(where)) blockers.push(where);
      if (attempt + 1 >= attempts)
        throw new BerthError(
          `process ${pid} keeps a thread inside the code to switch (${busy}${
            blockers.length > 1
              ? `; earlier also in ${blockers
                  .filter((b) => b !== where)
                  .slice(0, 3)
                  .join(", ")}`
              : ""
          }) after ${attempts} attempts; nothing was switched, try again later`,
        );
      // Jittered backoff, so a thread in a periodic loop is not met at the same point every time.
      await sleep(Math.min(2 ** attempt, 100) * (0.5 + Math.random()));
    }
  } finally {
    u.close();
    try {
      setPriority(niceness);
    } catch {}
  }
}
