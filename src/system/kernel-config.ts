// A kernel's build configuration: the CONFIG_* lines of a config file, and where a running kernel's
// config is found on a Debian system.

import { existsSync, readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

export function parseKernelConfig(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split("\n")) {
    const set = /^CONFIG_([A-Z0-9_]+)=(.*)$/.exec(line);
    if (set) m.set(set[1]!, set[2]!);
    const unset = /^# CONFIG_([A-Z0-9_]+) is not set$/.exec(line);
    if (unset) m.set(unset[1]!, "n");
  }
  return m;
}

/** The running kernel's config, where the distribution leaves it; undefined when there is none. */
export function runningKernelConfig(): { text: string; from: string } | undefined {
  const release = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  if (existsSync("/proc/config.gz"))
    return { text: gunzipSync(readFileSync("/proc/config.gz")).toString("utf8"), from: "/proc/config.gz" };
  for (const p of [`/boot/config-${release}`, `/usr/lib/modules/${release}/config`])
    if (existsSync(p)) return { text: readFileSync(p, "utf8"), from: p };
  return undefined;
}
