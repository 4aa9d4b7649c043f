// `berth update status` (src/update/status.ts) as the fleet's UpdateStatus (pure). The update part says
// which slot is booted, what each slot holds and in what state (good, trying, bad, empty, incomplete),
// and the last attempt with its result (good or bad once assessed); the agent adds its own view of an
// update job in flight.

import type { Slot, UpdateStateName, UpdateStatus } from "../server/api-schemas.ts";

type Loose = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === "string" && v ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown): Loose | undefined =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Loose) : undefined;

function slotsOf(v: unknown): Slot[] {
  if (!Array.isArray(v)) return [];
  return (v as unknown[])
    .map(obj)
    .filter((s): s is Loose => !!s)
    .map((s) => {
      const slot: Slot = {
        name: (str(s.slot) ?? str(s.name) ?? "?").slice(0, 16),
        release: str(s.release)?.slice(0, 64) ?? null,
        state: (str(s.state) ?? "empty").slice(0, 32),
      };
      const tries = num(s.triesLeft);
      if (tries !== undefined) slot.triesLeft = Math.max(0, Math.min(1000, Math.floor(tries)));
      return slot;
    })
    .slice(0, 8);
}

/** What the agent itself knows of an update job in flight. */
export type InFlight = "downloading" | "applied" | "rebooting" | undefined;

export function updateStatusFrom(json: unknown, inFlight?: InFlight): UpdateStatus {
  const s = obj(json) ?? {};
  const booted = obj(s.booted) ?? {};
  const bootedSlot = str(booted.slot) ?? null;
  const bootedRelease = str(booted.release);
  const slots = slotsOf(s.slots);
  const a = obj(s.lastAttempt);
  const version = str(a?.version);
  const assessed = str(a?.result); // good | bad, absent until the new release has been assessed
  let state: UpdateStateName = "idle";
  let result = "pending";
  if (version && assessed === "bad") {
    // A bad release the node is no longer on: it came back by itself.
    const back = (str(a?.booted) ?? bootedRelease) !== version;
    state = back ? "rolled-back" : "failed";
    result = state;
  } else if (version && assessed === "good") {
    state = bootedRelease === version ? "good" : "idle";
    result = "good";
  } else if (version) state = bootedRelease === version ? "rebooting" : "applied";
  if (inFlight) state = inFlight;
  const lastAttempt = version
    ? {
        version: version.slice(0, 64),
        at: str(a?.resolved) ?? str(a?.started) ?? new Date(0).toISOString(),
        result,
        ...(state === "rolled-back" || state === "failed"
          ? {
              reason: `release ${version} was assessed bad${str(a?.booted) ? `; running ${str(a?.booted)}` : ""}`,
            }
          : {}),
      }
    : null;
  const out: UpdateStatus = { state, booted: bootedSlot, slots, lastAttempt };
  if (lastAttempt?.reason) out.reason = lastAttempt.reason;
  return out;
}
