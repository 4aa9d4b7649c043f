// `berth update status`: the booted slot and release, what the other slot holds and in what state (good,
// trying, bad, empty, incomplete), the tries left, the last attempt and its result, the repository and
// the wave seed. Slot states come from the boot entries on the ESP (the loader's own record) and the
// node's bad list; the function that combines them is pure.

import { readFileSync } from "node:fs";
import { SLOTS, type Slot } from "../os/boot-entry.ts";
import { bakedUrl } from "../repo/client.ts";
import { type EspEntry, ensureEspMounted, readEntries } from "./esp.ts";
import { readNodeConfig } from "./node.ts";
import { bootedFrom, partitions } from "./slots.ts";
import {
  type Attempt,
  type Health,
  readAttempt,
  readBad,
  readHealth,
  readSlotWrite,
  type SlotWrite,
  stateDir,
} from "./state.ts";
import { nodeSeed } from "./waves.ts";

export type SlotState = "good" | "trying" | "bad" | "empty" | "incomplete";

export interface SlotStatus {
  slot: Slot;
  release?: string;
  state: SlotState;
  booted: boolean;
  /** The loader boots this slot next. */
  next: boolean;
  triesLeft?: number;
  triesDone?: number;
  entry?: string;
  /** Partition size, bytes. */
  bytes?: number;
}

export interface UpdateStatus {
  booted: { slot?: Slot; release?: string };
  slots: SlotStatus[];
  lastAttempt?: Attempt;
  health?: Health;
  bad: string[];
  repository?: string;
  seed: number;
}

/** Each slot's state from its boot entry, the bad list and an unfinished write. */
export function slotStatuses(
  entries: EspEntry[],
  booted: Slot | undefined,
  bad: string[],
  writing: SlotWrite | undefined,
): SlotStatus[] {
  return SLOTS.map((slot) => {
    const e = entries.find((x) => x.slot === slot);
    const base = { slot, booted: slot === booted, next: !!e?.preferred };
    if (!e) return { ...base, state: writing?.slot === slot ? "incomplete" : "empty", next: false };
    const state: SlotState =
      e.tries?.left === 0 || bad.includes(e.version) ? "bad" : e.tries ? "trying" : "good";
    return {
      ...base,
      release: e.version,
      state,
      entry: e.file,
      ...(e.tries ? { triesLeft: e.tries.left, triesDone: e.tries.done } : {}),
    };
  });
}

export async function updateStatus(o: { repository?: string } = {}): Promise<UpdateStatus> {
  const esp = await ensureEspMounted();
  const booted = bootedFrom(readFileSync("/proc/cmdline", "utf8"));
  const dir = stateDir();
  const bad = readBad(dir);
  const parts = partitions();
  const slots = slotStatuses(readEntries(esp), booted.slot, bad, readSlotWrite(dir)).map((s) => ({
    ...s,
    bytes: parts.find((p) => p.partname === `berth-root-${s.slot}`)?.bytes,
  }));
  const lastAttempt = readAttempt(dir);
  const health = readHealth(dir);
  const repository = o.repository ?? readNodeConfig().repository ?? bakedUrl();
  return {
    booted,
    slots,
    ...(lastAttempt ? { lastAttempt } : {}),
    ...(health ? { health } : {}),
    bad,
    ...(repository ? { repository } : {}),
    seed: await nodeSeed(dir),
  };
}
