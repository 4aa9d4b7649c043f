// Kernel livepatch lifecycle on the running kernel, through /sys/kernel/livepatch: load a patch module
// and wait for every task to switch, naming the tasks that hold the transition up; disable (roll back);
// replace with a cumulative patch; status with the kernel's taint. Also the signed-module policy that
// decides whether a module may load at all.

import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { BerthError } from "../common/errors.ts";
import { run } from "../common/exec.ts";

const KLP = "/sys/kernel/livepatch";

export interface LivepatchState {
  name: string;
  enabled: boolean;
  transition: boolean;
  /** Functions patched, as object:function. */
  functions: string[];
}

const readTrim = (p: string) => {
  try {
    return readFileSync(p, "utf8").trim();
  } catch {
    return undefined;
  }
};

export function livepatchSupported(): boolean {
  return existsSync(KLP);
}

export function livepatches(): LivepatchState[] {
  if (!existsSync(KLP)) return [];
  return readdirSync(KLP)
    .sort()
    .map((name) => {
      const dir = `${KLP}/${name}`;
      const functions: string[] = [];
      for (const obj of readdirSync(dir).filter(
        (d) => !["enabled", "transition", "force", "replace", "stack_order"].includes(d),
      )) {
        try {
          for (const f of readdirSync(`${dir}/${obj}`).filter((x) => x !== "patched"))
            functions.push(`${obj}:${f.replace(/,\d+$/, "")}`);
        } catch {}
      }
      return {
        name,
        enabled: readTrim(`${dir}/enabled`) === "1",
        transition: readTrim(`${dir}/transition`) === "1",
        functions,
      };
    });
}

/** Taint flags that matter for livepatching (bits of /proc/sys/kernel/tainted). */
export function taint(): { value: number; flags: string[] } {
  const v = Number(readTrim("/proc/sys/kernel/tainted") ?? "0");
  const names: [number, string][] = [
    [12, "O: out-of-tree module loaded"],
    [13, "E: unsigned module loaded"],
    [15, "K: kernel has been live patched"],
  ];
  return { value: v, flags: names.filter(([bit]) => v & (1 << bit)).map(([, n]) => n) };
}

export interface SigningPolicy {
  enforced: boolean;
  lockdown: string;
  why: string;
}

/** Whether unsigned modules may load, and why not. */
export function signingPolicy(): SigningPolicy {
  const sig = readTrim("/sys/module/module/parameters/sig_enforce") === "Y";
  const lockdownRaw = readTrim("/sys/kernel/security/lockdown") ?? "";
  const lockdown = /\[(\w+)\]/.exec(lockdownRaw)?.[1] ?? "none";
  const why = sig
    ? "module.sig_enforce is on: only modules signed with a key in the kernel's keyring load"
    : lockdown !== "none"
      ? `lockdown is ${lockdown} (usually from Secure Boot): only signed modules load`
      : "unsigned modules load (the kernel is tainted E when one does)";
  return { enforced: sig || lockdown !== "none", lockdown, why };
}

export function moduleIsSigned(ko: Buffer): boolean {
  return ko.subarray(-28).toString("latin1") === "~Module signature appended~\n";
}

/** modinfo fields from the module's .modinfo section (name=value strings). */
export function modinfo(ko: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  // .modinfo is a run of NUL-terminated key=value strings; scanning for known keys is enough here.
  for (const m of ko.toString("latin1").matchAll(/(?:^|\0)(name|livepatch|berth_replace|vermagic)=([^\0]*)/g))
    if (!out.has(m[1]!)) out.set(m[1]!, m[2]!);
  return out;
}

/** Tasks still on the old side of a transition: /proc/PID/task/TID/patch_state differs from the target. */
export function blockingTasks(target: 0 | 1): string[] {
  const out: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      const state = readTrim(`/proc/${pid}/task/${tid}/patch_state`);
      if (state === undefined || state === "-1" || Number(state) === target) continue;
      const comm = readTrim(`/proc/${pid}/task/${tid}/comm`) ?? "?";
      // The first frame that is not the scheduler says where the task waits.
      const stack =
        (readTrim(`/proc/${pid}/task/${tid}/stack`) ?? "")
          .split("\n")
          .map((l) => l.replace(/^\[<.*?>\]\s*/, "").trim())
          .find((f) => f && !/^(__schedule|schedule|schedule_\w+)\+/.test(f)) ?? "";
      out.push(`${comm}[${tid}]${stack ? ` in ${stack}` : ""}`);
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the patch's transition completes; names blocking tasks when it takes long. */
export async function waitTransition(
  name: string,
  target: 0 | 1,
  timeoutMs: number,
  onBlocked?: (tasks: string[]) => void,
): Promise<void> {
  const t0 = Date.now();
  let reported = 0;
  for (;;) {
    const t = readTrim(`${KLP}/${name}/transition`);
    if (t === undefined || t === "0") return;
    const waited = Date.now() - t0;
    if (waited > timeoutMs) {
      const tasks = blockingTasks(target);
      throw new BerthError(
        `livepatch ${name}: transition not finished after ${Math.round(waited / 1000)} s; blocked by ${tasks.slice(0, 10).join(", ") || "(no task reported)"}`,
      );
    }
    if (onBlocked && waited - reported > 2000) {
      reported = waited;
      onBlocked(blockingTasks(target));
    }
    await sleep(50);
  }
}

function nameOf(ko: Buffer, path: string): string {
  const n = modinfo(ko).get("name");
  if (!n) throw new BerthError(`${path} is not a kernel module (no modinfo name)`);
  return n;
}

export async function loadLivepatch(
  path: string,
  o: { timeoutMs: number; onBlocked?: (t: string[]) => void; requireReplace?: boolean },
): Promise<LivepatchState> {
  if (!livepatchSupported())
    throw new BerthError(
      "this kernel has no livepatch support (/sys/kernel/livepatch is missing; CONFIG_LIVEPATCH)",
    );
  const ko = readFileSync(path);
  const info = modinfo(ko);
  if (info.get("livepatch") !== "Y")
    throw new BerthError(`${path} is not a livepatch module (modinfo livepatch is not Y)`);
  if (o.requireReplace && info.get("berth_replace") !== "Y")
    throw new BerthError(`${path} is not a cumulative patch (build it with --replace)`);
  const name = nameOf(ko, path);
  const policy = signingPolicy();
  if (policy.enforced && !moduleIsSigned(ko))
    throw new BerthError(`${path} is not signed and ${policy.why}; build it with --sign-key and --sign-cert`);
  const r = await run("insmod", [path]);
  if (r.code !== 0) throw new BerthError(`insmod ${path} failed: ${r.stderr.trim().split("\n").pop()}`);
  await waitTransition(name, 1, o.timeoutMs, o.onBlocked);
  const s = livepatches().find((p) => p.name === name);
  if (!s?.enabled) throw new BerthError(`livepatch ${name} loaded but is not enabled`);
  return s;
}

export async function disableLivepatch(
  name: string,
  o: { timeoutMs: number; remove: boolean; onBlocked?: (t: string[]) => void },
): Promise<void> {
  const dir = `${KLP}/${name}`;
  if (!existsSync(dir)) throw new BerthError(`no livepatch named ${name} (see berth patch kernel status)`);
  writeFileSync(`${dir}/enabled`, "0");
  await waitTransition(name, 0, o.timeoutMs, o.onBlocked);
  if (o.remove) {
    const r = await run("rmmod", [name]);
    if (r.code !== 0) throw new BerthError(`rmmod ${name} failed: ${r.stderr.trim().split("\n").pop()}`);
  }
}

/** Modules that were livepatches but are no longer in /sys/kernel/livepatch (replaced or disabled). */
export function leftoverPatchModules(): string[] {
  const active = new Set(livepatches().map((p) => p.name));
  const mods = (readTrim("/proc/modules") ?? "").split("\n").map((l) => l.split(" ")[0]!);
  return mods.filter(
    (m) =>
      m &&
      !active.has(m) &&
      existsSync(`/sys/module/${m}`) &&
      readTrim(`/sys/module/${m}/taint`)?.includes("K"),
  );
}
