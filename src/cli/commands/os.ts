// `berth os`: build, report on, boot and check Berth OS images.

import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { formatBytes, renderTable } from "../../common/format.ts";
import { bootRecordOf, readBootRecord, writeBootRecord } from "../../os/boot-record.ts";
import { buildImage, writeReport } from "../../os/build.ts";
import { checkConfig, configOf, runtimeProbes, summarize } from "../../os/kernel-check.ts";
import type { Manifest } from "../../os/manifest.ts";
import { readProfile } from "../../os/profile.ts";
import { defaultCpus, runImage } from "../../os/qemu.ts";
import { checkReleaseVersion } from "../../os/release.ts";
import { makeReport, type Report, reportMarkdown } from "../../os/report.ts";
import { Archive } from "../../pkg/archive.ts";
import { parseKernelConfig, runningKernelConfig } from "../../system/kernel-config.ts";
import { contextOf, say, warn } from "../context.ts";
import { printJson } from "../output.ts";

/** The repository's profiles directory (profiles ship with Berth). */
export const PROFILES_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../profiles");
export const DEFAULT_PROFILE = join(PROFILES_DIR, "container-host.yaml");
export const BASELINE_PROFILE = join(PROFILES_DIR, "general-purpose.yaml");

function readKeys(files: string[] = []): string[] {
  return files.map((f) => {
    let text: string;
    try {
      text = readFileSync(f, "utf8").trim();
    } catch {
      throw new UsageError(`cannot read SSH public key ${f}`);
    }
    if (!/^(ssh-|ecdsa-|sk-)/.test(text)) throw new UsageError(`${f} is not an SSH public key`);
    return text;
  });
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerOsCommands(program: Command): void {
  const os = program
    .command("os")
    .description("Berth OS: build a trimmed container host image from a profile, report on it, boot it");

  os.command("build")
    .description(
      "build an image from a profile: root image, kernel, initramfs, bootable disk, manifest and report",
    )
    .argument("[profile]", "profile YAML", DEFAULT_PROFILE)
    .option("--out <dir>", "output directory (default: ./out/<profile name>)")
    .option("--ssh-key <file>", "an SSH public key for the first user (repeatable)", collect)
    .option("--baseline <profile>", "profile of the stock install to compare with", BASELINE_PROFILE)
    .option("--no-baseline", "skip the baseline (the report then has the image's figures only)")
    .option("--offline", "use only the cache")
    .option("--no-image-cache", "compress the root even when an identical tree was compressed before")
    .option(
      "--release-version <version>",
      "release version YYYY.MM.N stamped into the image (default: YYYY.MM.DDHH of the archive state)",
    )
    .option("--json", "print the manifest as JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  berth os build                                   profiles/container-host.yaml into ./out/container-host\n  berth os build profiles/general-purpose.yaml --no-baseline\n  berth os build --ssh-key ~/.ssh/id_ed25519.pub --out /srv/images/host",
    )
    .action(
      async (
        profilePath: string,
        o: {
          out?: string;
          sshKey?: string[];
          baseline: string | false;
          offline?: boolean;
          imageCache: boolean;
          releaseVersion?: string;
        },

        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        const profile = readProfile(profilePath);
        const baseline = o.baseline === false ? false : readProfile(o.baseline);
        const keys = readKeys(o.sshKey);
        if (o.releaseVersion !== undefined) checkReleaseVersion(o.releaseVersion, "--release-version");
        if (process.getuid?.() !== 0)
          throw new UsageError("berth os build needs root (mmdebstrap builds the root as root)");
        const out = o.out ?? join("out", profile.name);
        const archive = new Archive({ progress: ctx.progress, offline: o.offline });
        const r = await buildImage(profile, {
          out,
          archive,
          progress: ctx.progress,
          sshKeys: keys,
          baseline,
          imageCache: o.imageCache,
          releaseVersion: o.releaseVersion,
        });
        if (ctx.json) return printJson(r.manifest);
        const report = JSON.parse(await readFile(join(r.out, "report.json"), "utf8")) as { claim: string };
        say(
          ctx,
          `built ${profile.name} in ${r.manifest.buildSeconds} s -> ${r.out} (release ${r.manifest.releaseVersion})`,
        );
        say(
          ctx,
          `  ${r.manifest.packages.length} packages, ${r.manifest.enabledServices.length} services, root image ${formatBytes(r.manifest.compressedBytes)}`,
        );
        say(ctx, `  ${report.claim}`);
        say(ctx, `  boot it: berth os run ${r.out}   check it: berth os run ${r.out} --check`);
      },
    );

  os.command("report")
    .description(
      "the trimming report of a built image against the baseline (rewrites report.json and report.md)",
    )
    .argument("[image]", "output directory of berth os build", "out/container-host")
    .option(
      "--baseline <dir>",
      "output directory of the baseline build (default: the one recorded at build time)",
    )
    .option("--json", "print the report as JSON")
    .action(async (image: string, o: { baseline?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const load = async (dir: string) => {
        const p = join(dir, "manifest.json");
        if (!existsSync(p))
          throw new UsageError(`${dir} has no manifest.json; is it an output directory of berth os build?`);
        return JSON.parse(await readFile(p, "utf8")) as Manifest;
      };
      const m = await load(image);
      let baseline: Manifest | undefined;
      const boot = {
        image: readBootRecord(image),
        baseline: o.baseline ? readBootRecord(o.baseline) : undefined,
      };
      if (o.baseline) baseline = await load(o.baseline);
      else {
        const prev = join(image, "report.json");
        const r = existsSync(prev)
          ? (JSON.parse(await readFile(prev, "utf8")) as { baseline?: unknown })
          : {};
        if (r.baseline) {
          // The recorded report, with the image's latest checked boot.
          const report = JSON.parse(await readFile(prev, "utf8")) as Report;
          if (boot.image) report.boot = { ...report.boot, image: boot.image };
          if (ctx.json) return printJson(report);
          return say(ctx, reportMarkdown(report));
        }
      }
      await writeReport(image, m, baseline, boot);
      const report = makeReport(m, baseline, new Date(), boot);
      if (ctx.json) printJson(report);
      else say(ctx, reportMarkdown(report));
    });

  os.command("run")
    .description(
      "boot an image in QEMU (serial console attached); --check waits until a container ran, then powers off",
    )
    .argument(
      "[image]",
      "output directory of berth os build (or a disk.img for UEFI boot)",
      "out/container-host",
    )
    .option(
      "--check",
      "boot, wait for the runtime and a container from the baked image, print boot-to-ready seconds, power off",
    )
    .option("--ssh-port <port>", "host port forwarded to the guest's SSH", (v) => Number(v))
    .option(
      "--docker-port <port>",
      "host port forwarded to the guest's Docker API (opt-in, unauthenticated)",
      (v) => Number(v),
    )
    .option("--memory <MiB>", "guest memory", (v) => Number(v), 2048)
    .option("--cpus <n>", "guest CPUs (default 1 under TCG, where more are unreliable; 2 with --kvm)", (v) =>
      Number(v),
    )
    .option("--kvm", "use KVM instead of TCG (only where KVM is really fast)")
    .option("--uefi", "boot through OVMF and systemd-boot on the ESP instead of direct kernel boot")
    .option("--timeout <seconds>", "give up the check after this long", (v) => Number(v), 600)
    .option(
      "--analyze",
      "with --check: print where the boot went (systemd-analyze critical chain and blame, from inside the guest) and keep it as boot.json beside the image",
    )
    .option("--serial-log <file>", "write the serial console here")
    .option("--json", "print the check result as JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  berth os run out/container-host                 serial console on this terminal (Ctrl-A X quits)\n  berth os run out/container-host --check\n  berth os run out/container-host --ssh-port 2222   then: ssh -p 2222 berth@127.0.0.1",
    )
    .action(
      async (
        image: string,
        o: {
          check?: boolean;
          sshPort?: number;
          dockerPort?: number;
          memory: number;
          cpus?: number;
          kvm?: boolean;
          uefi?: boolean;
          timeout: number;
          serialLog?: string;
          analyze?: boolean;
        },
        cmd: Command,
      ) => {
        const ctx = contextOf(cmd);
        if (o.analyze && (!o.check || o.uefi))
          throw new UsageError("--analyze needs --check and direct kernel boot (not --uefi)");
        for (const [k, v] of Object.entries({ "--ssh-port": o.sshPort, "--docker-port": o.dockerPort }))
          if (v !== undefined && !(Number.isInteger(v) && v > 0 && v < 65536))
            throw new UsageError(`${k} must be a port number`);
        const interactive = !o.check && !!process.stdin.isTTY;
        if (!o.check && !interactive)
          say(ctx, "no terminal: the serial console goes to stdout; stop with Ctrl-C");
        if (o.sshPort && !ctx.json) say(ctx, `ssh: ssh -p ${o.sshPort} berth@127.0.0.1`);
        const r = await runImage({
          image,
          check: o.check,
          sshPort: o.sshPort,
          dockerPort: o.dockerPort,
          memoryMiB: o.memory,
          cpus: o.cpus,
          accel: o.kvm ? "kvm" : "tcg",
          firmware: o.uefi ? "uefi" : "direct",
          timeoutSeconds: o.timeout,
          serialLog: o.serialLog,
          interactive,
          onLine: !o.check && !interactive ? (l) => process.stdout.write(`${l}\n`) : undefined,
          analyze: o.analyze,
        });
        if (!o.check) return;
        if (ctx.json) printJson(r);
        if (!r.ok) throw new BerthError(`check failed: ${r.reason} (serial log: ${r.serialLog})`);
        if (!ctx.json)
          say(
            ctx,
            `container ran: boot-to-ready ${r.readySeconds!.toFixed(1)} s (guest uptime ${r.guestUptime} s)`,
          );
        if (o.analyze) {
          if (!r.analysis)
            warn("the guest sent no boot analysis (an image built before berth.analyze existed?)");
          else if (!ctx.json)
            say(
              ctx,
              [
                "critical chain:",
                ...r.analysis.criticalChain,
                "slowest units:",
                ...r.analysis.blame.slice(0, 10),
              ].join("\n"),
            );
          const accel = o.kvm ? "KVM" : "TCG";
          const cpus = o.cpus ?? defaultCpus(o.kvm ? "kvm" : "tcg");
          const machine = `QEMU ${accel}, ${cpus} vCPU, ${o.uefi ? "UEFI" : "direct kernel"} boot`;
          // Kept beside the image for `berth os report` (a bare disk has no directory of its own).
          if (!image.endsWith(".img")) await writeBootRecord(image, bootRecordOf(r, machine));
        }
      },
    );

  os.command("kernel-check")
    .description(
      "which container features a kernel has (namespaces, cgroups, netfilter, overlayfs, seccomp, ...)",
    )
    .argument("[image]", "an image directory, a root file system, a kernel config or a linux-image .deb")
    .option("--running", "check the running kernel (config where available, plus /proc and /sys)")
    .option("--all", "list every feature, not only the missing ones")
    .option("--json", "print as JSON")
    .action(async (target: string | undefined, o: { running?: boolean; all?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      if (!target && !o.running)
        throw new UsageError("name an image, root, config or .deb, or pass --running");
      if (target && o.running) throw new UsageError("give either a target or --running, not both");
      let check: ReturnType<typeof summarize>;
      if (o.running) {
        const cfg = runningKernelConfig();
        const features = [...(cfg ? checkConfig(parseKernelConfig(cfg.text)) : []), ...runtimeProbes()];
        check = summarize(
          `running ${readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()}`,
          features,
          cfg?.from,
        );
        if (!cfg)
          warn("no config for the running kernel (/proc/config.gz, /boot/config-*): only runtime probes");
      } else {
        const cfg = await configOf(target!);
        check = summarize(target!, checkConfig(parseKernelConfig(cfg.text)), cfg.from);
      }
      if (ctx.json) printJson(check);
      else {
        const rows = check.features.filter((f) => o.all || f.state === "missing" || f.state === "unknown");
        say(ctx, `kernel: ${check.target}${check.configFrom ? ` (config: ${check.configFrom})` : ""}`);
        if (rows.length)
          say(
            ctx,
            renderTable(
              ["group", "feature", "state", "required"],
              rows.map((f) => [f.group, f.name, f.state, f.required ? "yes" : "no"]),
            ),
          );
        say(
          ctx,
          `${check.features.length} features checked, ${check.features.filter((f) => f.state === "missing").length} missing, ${check.missingRequired.length} of them required`,
        );
      }
      if (check.missingRequired.length) process.exitCode = 1;
    });
}
