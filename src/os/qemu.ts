// Booting an image in QEMU. The built disk stays untouched: the VM writes to a qcow2 overlay in a temp
// directory unless --persist. TCG is the default accelerator: on these machines /dev/kvm is a slow nested
// emulator. --check waits for the image's boot self-test (berth-check.service, every boot) to report on
// the serial console that a container ran, then powers the VM off.

import { spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BerthError, UsageError } from "../common/errors.ts";
import { runChecked } from "../common/exec.ts";

export interface RunOptions {
  image: string;
  check?: boolean;
  sshPort?: number;
  dockerPort?: number;
  memoryMiB?: number;
  cpus?: number;
  accel?: "tcg" | "kvm";
  firmware?: "direct" | "uefi";
  persist?: boolean;
  timeoutSeconds?: number;
  /** Extra kernel command-line words (direct boot). */
  append?: string[];
  /** Where the serial console goes when not interactive. */
  serialLog?: string;
  /** Attach the serial console to this terminal (interactive use). */
  interactive?: boolean;
  onLine?: (line: string) => void;
  /** Stops the VM (QMP quit) when aborted. */
  signal?: AbortSignal;
  /** Let the guest reboot in the same VM (A/B updates) instead of QEMU exiting at a reboot. */
  reboot?: boolean;
  /** With check: the guest also reports where its boot went (systemd-analyze); direct boot only. */
  analyze?: boolean;
}

/** Where a boot went, as systemd-analyze saw it inside the guest once a container had run. */
export interface BootAnalysis {
  /** `systemd-analyze critical-chain berth-check.service`: the chain to the self-test, slowest link first. */
  criticalChain: string[];
  /** `systemd-analyze blame`, the slowest units first. */
  blame: string[];
}

export interface RunResult {
  ok: boolean;
  /** Seconds from QEMU start to the guest's readiness report. */
  readySeconds?: number;
  /** Guest uptime the guest reported at readiness. */
  guestUptime?: number;
  /** With analyze: the guest's own account of the boot. */
  analysis?: BootAnalysis;
  reason?: string;
  serialLog: string;
}

export interface ImageFiles {
  disk: string;
  kernel?: string;
  initrd?: string;
  cmdline?: string;
}

/** An image is an output directory of `berth os build`, or a bare disk (UEFI boot only). */
export async function imageFiles(image: string): Promise<ImageFiles> {
  const p = resolve(image);
  if (!existsSync(p)) throw new UsageError(`no image at ${image}`);
  if (p.endsWith(".img")) return { disk: p };
  const disk = join(p, "disk.img");
  if (!existsSync(disk))
    throw new UsageError(`${image} has no disk.img; is it an output directory of berth os build?`);
  const cmdline = existsSync(join(p, "cmdline"))
    ? (await readFile(join(p, "cmdline"), "utf8")).trim()
    : undefined;
  return { disk, kernel: join(p, "vmlinuz"), initrd: join(p, "initrd.img"), cmdline };
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

const OVMF_CODE = ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd"];
const OVMF_VARS = ["/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd"];

/** ssh's arguments for a command in a guest booted by `berth os run` (its SSH forwarded to the host's
 * loopback): key only, no host-key prompts (every boot makes new host keys), quiet. */
export function guestSshArgs(port: number, key: string, command: string, user = "berth"): string[] {
  return [
    "-i",
    key,
    "-p",
    String(port),
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=60",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
    `${user}@127.0.0.1`,
    command,
  ];
}

/**
 * One vCPU under TCG: with several, QEMU 7.2's multi-threaded TCG now and then mishandles the kernel's
 * live code patching (an "int3" oops early in boot), and single-threaded TCG stalls for a minute at a
 * time. With one vCPU neither happens. KVM gets two.
 */
export function defaultCpus(accel: RunOptions["accel"]): number {
  return accel === "kvm" ? 2 : 1;
}

export function qemuArgs(
  files: ImageFiles,
  o: RunOptions,
  disk: string,
  qmp: string,
  vars?: string,
): string[] {
  const accel = o.accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg", "-cpu", "max"];
  const fwd = [`hostfwd=tcp:127.0.0.1:${o.sshPort}-:22`];
  if (o.dockerPort) fwd.push(`hostfwd=tcp:127.0.0.1:${o.dockerPort}-:2375`);
  const args = [
    "-machine",
    "q35",
    ...accel,
    "-smp",
    String(o.cpus ?? defaultCpus(o.accel)),
    "-m",
    String(o.memoryMiB ?? 2048),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    o.interactive ? "mon:stdio" : "stdio",
    "-drive",
    `file=${disk},if=none,id=disk0,format=${o.persist ? "raw" : "qcow2"},discard=unmap`,
    "-device",
    "nvme,drive=disk0,serial=berth0",
    "-netdev",
    `user,id=net0,${fwd.join(",")}`,
    "-device",
    "virtio-net-pci,netdev=net0",
    "-object",
    "rng-random,filename=/dev/urandom,id=rng0",
    "-device",
    "virtio-rng-pci,rng=rng0",
    "-qmp",
    `unix:${qmp},server=on,wait=off`,
    ...(o.reboot ? [] : ["-no-reboot"]),
  ];
  const extra = [
    ...(o.dockerPort ? ["berth.docker_tcp"] : []),
    ...(o.analyze ? ["berth.analyze"] : []),
    ...(o.append ?? []),
  ];
  if (o.firmware === "uefi") {
    const code = OVMF_CODE.find(existsSync);
    if (!code || !vars) throw new UsageError("UEFI boot needs OVMF (apt-get install ovmf)");
    // The kernel command line is then the boot loader entry's; nothing can be added to it from here.
    if (extra.length)
      throw new UsageError("--docker-port and extra kernel arguments need direct kernel boot (not --uefi)");
    args.push(
      "-drive",
      `if=pflash,format=raw,readonly=on,file=${code}`,
      "-drive",
      `if=pflash,format=raw,file=${vars}`,
    );
  } else {
    if (!files.kernel || !files.initrd)
      throw new UsageError(
        "direct boot needs the image's vmlinuz and initrd.img; use --uefi for a bare disk",
      );
    args.push(
      "-kernel",
      files.kernel,
      "-initrd",
      files.initrd,
      "-append",
      [files.cmdline ?? "console=ttyS0", ...extra].join(" "),
    );
  }
  return args;
}

function qmpQuit(socket: string): Promise<void> {
  return new Promise((res) => {
    const c = connect(socket);
    c.on("error", () => res());
    c.on("data", () => {});
    c.on("connect", () => {
      c.write('{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n');
      setTimeout(() => {
        c.destroy();
        res();
      }, 500);
    });
  });
}

const READY = /BERTH-CHECK: container ran uptime=([\d.]+)/;
/** The guest's systemd-analyze output after the self-test line (berth.analyze; see base-package.ts). */
const ANALYSIS = /BERTH-ANALYZE(-BLAME)?: (.*)$/;
const FAILED = /BERTH-CHECK: FAILED: (.*)|Kernel panic - not syncing: (.*)|berth-initramfs: FATAL: (.*)/;

export async function runImage(o: RunOptions): Promise<RunResult> {
  const files = await imageFiles(o.image);
  if (o.firmware !== "uefi" && !files.kernel) o.firmware = "uefi";
  const tmp = await mkdtemp(join(tmpdir(), "berth-run-"));
  const overlay = o.persist ? files.disk : join(tmp, "overlay.qcow2");
  const qmp = join(tmp, "qmp.sock");
  const serialLog = o.serialLog ?? join(tmp, "serial.log");
  o.sshPort ??= await freePort();
  let vars: string | undefined;
  try {
    if (!o.persist)
      await runChecked("qemu-img", "qemu-img", [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        files.disk,
        overlay,
      ]);
    if (o.firmware === "uefi") {
      const src = OVMF_VARS.find(existsSync);
      if (src) {
        vars = join(tmp, "OVMF_VARS.fd");
        await copyFile(src, vars);
      }
    }
    const args = qemuArgs(files, o, overlay, qmp, vars);
    const started = performance.now();
    const child = spawn("qemu-system-x86_64", args, {
      stdio: [o.interactive ? "inherit" : "ignore", o.interactive ? "inherit" : "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    if (o.interactive) {
      const code = await new Promise<number>((r) => child.on("close", (c) => r(c ?? 1)));
      return { ok: code === 0, serialLog: "(terminal)" };
    }
    const log = createWriteStream(serialLog);
    const result = await new Promise<RunResult>((res) => {
      let partial = "";
      let settled = false;
      let ready: RunResult | undefined;
      const analysis: BootAnalysis = { criticalChain: [], blame: [] };
      const finish = (r: RunResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        res(r);
      };
      const timeout = o.timeoutSeconds ?? 600;
      const timer = setTimeout(
        () => finish({ ok: false, reason: `no readiness report after ${timeout} s`, serialLog }),
        timeout * 1000,
      );
      o.signal?.addEventListener("abort", () => finish({ ok: true, reason: "stopped", serialLog }), {
        once: true,
      });
      child.stdout!.on("data", (d: Buffer) => {
        log.write(d);
        partial += d.toString("utf8").replace(/\r/g, "");
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) {
          o.onLine?.(line);
          if (!o.check) continue;
          const ok = READY.exec(line);
          if (ok) {
            ready = {
              ok: true,
              readySeconds: (performance.now() - started) / 1000,
              guestUptime: Number(ok[1]),
              serialLog,
            };
            if (!o.analyze) finish(ready);
            // The analysis follows the self-test line; a guest that never sends it still passed.
            else setTimeout(() => finish(ready!), 180_000).unref();
          }
          const part = ANALYSIS.exec(line);
          if (ready && o.analyze && part) {
            if (part[2] === "end") finish({ ...ready, analysis });
            else (part[1] ? analysis.blame : analysis.criticalChain).push(part[2]!.trimEnd());
          }
          const bad = FAILED.exec(line);
          if (bad) finish({ ok: false, reason: (bad[1] ?? bad[2] ?? bad[3] ?? "").trim(), serialLog });
        }
      });
      child.on("close", (code) =>
        finish(
          o.check
            ? {
                ok: false,
                reason: `QEMU exited (${code}) before the check finished${stderr ? `: ${stderr.trim().split("\n").pop()}` : ""}`,
                serialLog,
              }
            : { ok: code === 0, serialLog },
        ),
      );
    });
    if (child.exitCode === null) {
      await qmpQuit(qmp);
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          child.kill("SIGKILL");
          r();
        }, 5000);
        child.on("close", () => {
          clearTimeout(t);
          r();
        });
      });
    }
    log.end();
    return result;
  } finally {
    // The serial log stays for diagnosis when it lives in the temp directory; everything else goes.
    if (!o.persist) await rm(overlay, { force: true });
    await rm(qmp, { force: true });
    if (vars) await rm(vars, { force: true });
    if (o.serialLog) await rm(tmp, { recursive: true, force: true });
  }
}

/** A VM running in the background (for tests and tooling). */
export interface BackgroundVm {
  sshPort: number;
  /** Resolves with the first serial-console line matching `re` (rejects after `timeoutMs`). */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>;
  /** Powers the VM off (QMP quit) and waits for QEMU to exit. */
  stop(): Promise<void>;
  done: Promise<RunResult>;
}

/**
 * Starts a VM in the background. Connect to the forwarded ports only once the guest is listening
 * (waitForLine on the self-test line, for instance): QEMU 7.2's user-mode network stalls the whole
 * guest while a forwarded connection waits for a guest listener.
 */
export async function startVm(o: Omit<RunOptions, "check" | "signal">): Promise<BackgroundVm> {
  if (!existsSync("/usr/bin/qemu-system-x86_64")) throw new BerthError("qemu-system-x86_64 is not installed");
  const sshPort = o.sshPort ?? (await freePort());
  const abort = new AbortController();
  const seen: string[] = [];
  const waiters = new Set<{ re: RegExp; resolve: (l: string) => void }>();
  const onLine = (line: string) => {
    seen.push(line);
    for (const w of waiters)
      if (w.re.test(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
    o.onLine?.(line);
  };
  const done = runImage({
    ...o,
    sshPort,
    check: false,
    timeoutSeconds: 24 * 3600,
    signal: abort.signal,
    onLine,
  });
  return {
    sshPort,
    done,
    waitForLine: (re, timeoutMs) =>
      new Promise((resolve, reject) => {
        const hit = seen.find((l) => re.test(l));
        if (hit) return resolve(hit);
        const w = { re, resolve };
        waiters.add(w);
        setTimeout(() => {
          if (waiters.delete(w))
            reject(new BerthError(`no serial line matching ${re} within ${timeoutMs / 1000} s`));
        }, timeoutMs).unref();
        void done.then(() => {
          if (waiters.delete(w)) reject(new BerthError(`the VM stopped before a line matching ${re}`));
        });
      }),
    stop: async () => {
      abort.abort();
      await done;
    },
  };
}
