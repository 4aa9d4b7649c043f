// The record of a checked boot (`berth os run --check --analyze`), kept beside the image it booted as
// boot.json, so the trimming report can show where the boot went: time to a running container and
// systemd's critical chain to the self-test, for the image and for the baseline.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../common/fsutil.ts";
import type { BootAnalysis, RunResult } from "./qemu.ts";

export const BOOT_FILE = "boot.json";

export interface BootRecord {
  /** When the boot ran (ISO 8601). */
  date: string;
  /** Seconds from QEMU start to a container having run. */
  readySeconds: number;
  /** The guest's uptime when it reported the container. */
  guestUptime?: number;
  /** How the machine was booted, e.g. "QEMU TCG, 1 vCPU, direct kernel boot". */
  machine: string;
  analysis?: BootAnalysis;
}

export function bootRecordOf(r: RunResult, machine: string, now = new Date()): BootRecord {
  return {
    date: now.toISOString(),
    readySeconds: Math.round((r.readySeconds ?? 0) * 10) / 10,
    ...(r.guestUptime !== undefined ? { guestUptime: r.guestUptime } : {}),
    machine,
    ...(r.analysis ? { analysis: r.analysis } : {}),
  };
}

export async function writeBootRecord(dir: string, record: BootRecord): Promise<void> {
  await writeFileAtomic(join(dir, BOOT_FILE), `${JSON.stringify(record, null, 2)}\n`);
}

/** The boot record of an image directory, if it was ever booted with --analyze (undefined otherwise). */
export function readBootRecord(dir: string): BootRecord | undefined {
  const p = join(dir, BOOT_FILE);
  if (!existsSync(p)) return undefined;
  try {
    const r = JSON.parse(readFileSync(p, "utf8")) as BootRecord;
    return typeof r.readySeconds === "number" ? r : undefined;
  } catch {
    return undefined;
  }
}
