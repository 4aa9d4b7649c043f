// Configures a fresh root for Berth's read-only layout, then trims and normalises it:
// hostname, users and keys, units, /home and /root under /var, install-time-only packages purged,
// unneeded kernel modules dropped, and every file that differs from build to build removed.

import { existsSync } from "node:fs";
import { chmod, chown, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BerthError, UsageError } from "../common/errors.ts";
import { runChecked } from "../common/exec.ts";
import { type Progress, silentProgress } from "../common/progress.ts";
import { treeBytes } from "./manifest.ts";
import { type Profile, whereIs } from "./profile.ts";
import { UPDATE_UNITS } from "./update-files.ts";

/** Runs commands inside the root, with the build's SOURCE_DATE_EPOCH (useradd dates accounts by it). */
type Chroot = (what: string, cmd: string[]) => Promise<unknown>;

function chrootIn(root: string, sourceDateEpoch: number): Chroot {
  return (what, cmd) =>
    runChecked(what, "chroot", [root, ...cmd], {
      env: {
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        LC_ALL: "C.UTF-8",
        SOURCE_DATE_EPOCH: String(sourceDateEpoch),
      },
    });
}

export interface CustomizeOptions {
  progress?: Progress;
  sourceDateEpoch: number;
  /** Extra authorized keys for the first user (berth os build --ssh-key). */
  extraKeys?: string[];
}

export interface CustomizeResult {
  kernelVersion: string;
  purged: string[];
  droppedModuleDirs: string[];
  /** Bytes the dropped module directories held (as shipped, compressed). */
  droppedModuleBytes: number;
}

async function installedNames(root: string): Promise<Set<string>> {
  const text = await readFile(join(root, "var/lib/dpkg/status"), "utf8");
  const names = new Set<string>();
  for (const stanza of text.split(/\n\n+/)) {
    const name = /^Package: (\S+)$/m.exec(stanza)?.[1];
    if (name && /^Status: .* installed$/m.test(stanza)) names.add(name);
  }
  return names;
}

async function setupFilesystemLayout(root: string): Promise<void> {
  // The root is read-only at run time; /var is the writable state partition. Homes live there.
  await mkdir(join(root, "var/home"), { recursive: true });
  await rm(join(root, "home"), { recursive: true, force: true });
  await symlink("var/home", join(root, "home"));
  await mkdir(join(root, "var/roothome"), { recursive: true, mode: 0o700 });
  for (const f of await readdir(join(root, "root")).catch(() => [] as string[]))
    await rename(join(root, "root", f), join(root, "var/roothome", f));
  await rm(join(root, "root"), { recursive: true, force: true });
  await symlink("var/roothome", join(root, "root"));
  await chmod(join(root, "var/roothome"), 0o700);
  // Where berth-health (and berth update) mount the ESP (boot entries for A/B updates).
  await mkdir(join(root, "efi"), { recursive: true, mode: 0o700 });
}

async function setupUsers(root: string, p: Profile, extraKeys: string[], chroot: Chroot): Promise<void> {
  for (const [i, u] of p.users.entries()) {
    const groups = [];
    for (const g of u.groups) {
      const exists = (await readFile(join(root, "etc/group"), "utf8"))
        .split("\n")
        .some((l) => l.startsWith(`${g}:`));
      if (!exists) await chroot(`creating group ${g}`, ["groupadd", "--system", g]);
      groups.push(g);
    }
    await chroot(`creating user ${u.name}`, [
      "useradd",
      "--create-home",
      "--home-dir",
      `/home/${u.name}`,
      "--shell",
      "/bin/bash",
      "--uid",
      String(u.uid),
      "--user-group",
      ...(groups.length ? ["--groups", groups.join(",")] : []),
      u.name,
    ]);
    const keys = [...u.sshAuthorizedKeys, ...(i === 0 ? extraKeys : [])];
    const home = join(root, "var/home", u.name);
    await mkdir(join(home, ".ssh"), { recursive: true, mode: 0o700 });
    await writeFile(join(home, ".ssh/authorized_keys"), keys.length ? `${keys.join("\n")}\n` : "", {
      mode: 0o600,
    });
    await chown(join(home, ".ssh"), u.uid, u.uid);
    await chown(join(home, ".ssh/authorized_keys"), u.uid, u.uid);
    if (u.sudo === "nopasswd") {
      await mkdir(join(root, "etc/sudoers.d"), { recursive: true });
      await writeFile(
        join(root, `etc/sudoers.d/50-berth-${u.name}`),
        `${u.name} ALL=(ALL:ALL) NOPASSWD: ALL\n`,
        { mode: 0o440 },
      );
    }
  }
}

async function setupUnits(root: string, p: Profile, chroot: Chroot): Promise<void> {
  const run = (verb: string, units: string[]) =>
    units.length ? chroot(`systemctl ${verb}`, ["systemctl", verb, ...units]) : undefined;
  const berthUnits = [
    "berth-resolvconf.path",
    "berth-preload-images.service",
    "berth-check.service",
    "berth-grow-state.service",
  ];
  if (existsSync(join(root, "usr/sbin/sshd"))) berthUnits.push("berth-ssh-keygen.service");

  if (p.runtime === "docker") berthUnits.push("berth-docker-tcp.socket");
  for (const u of UPDATE_UNITS) if (existsSync(join(root, "usr/lib/systemd/system", u))) berthUnits.push(u);
  await run("enable", [...p.services.enable, ...berthUnits]);
  await run("disable", p.services.disable);
  // The image is configured at build time; systemd-firstboot would otherwise prompt on the console
  // at the first boot, which "uninitialized" in /etc/machine-id announces.
  await run("mask", [...p.services.mask, "systemd-firstboot.service"]);
}

async function setupNetworkNames(root: string, p: Profile): Promise<void> {
  await writeFile(join(root, "etc/hostname"), `${p.hostname}\n`);
  await writeFile(
    join(root, "etc/hosts"),
    `127.0.0.1\tlocalhost\n127.0.1.1\t${p.hostname}\n::1\t\tlocalhost ip6-localhost ip6-loopback\n`,
  );
  // Without a resolver daemon, DNS comes from DHCP leases (berth-resolvconf).
  if (!existsSync(join(root, "usr/lib/systemd/systemd-resolved"))) {
    await rm(join(root, "etc/resolv.conf"), { force: true });
    await symlink("/run/berth/resolv.conf", join(root, "etc/resolv.conf"));
  }
}

async function purgeInstallTimeOnly(root: string, p: Profile, chroot: Chroot): Promise<string[]> {
  const installed = await installedNames(root);
  const purge = p.cut.installTimeOnly.filter((n) => installed.has(n));
  if (!purge.length) return [];
  // Dependents first, perl last: maintainer scripts of the others may still need it.
  const ordered = [...purge.filter((n) => n !== "perl-base"), ...purge.filter((n) => n === "perl-base")];
  await chroot("purging install-time-only packages", [
    "dpkg",
    "--purge",
    "--force-depends",
    "--force-remove-essential",
    ...ordered,
  ]);
  return ordered;
}

async function dropKernelModules(
  root: string,
  p: Profile,
  version: string,
  chroot: Chroot,
): Promise<{ dirs: string[]; bytes: number }> {
  const base = join(root, "usr/lib/modules", version, "kernel");
  const dropped: string[] = [];
  let bytes = 0;
  for (const dir of p.kernel.dropModules) {
    const path = join(base, dir);
    if (!existsSync(path)) continue;
    bytes += await treeBytes(path);
    await rm(path, { recursive: true });
    dropped.push(dir);
  }
  // Debian compresses each module on its own (xz); stored plain, they compress better together in the
  // squashfs root (1 MiB blocks, x86 filter): 17.2 MB -> 15.3 MB for the cloud kernel's set. Signatures
  // are kept, they sit inside the module.
  // One xz per core: a single xz works through the thousand-odd small files one after the other.
  await runChecked("decompressing kernel modules", "sh", [
    "-c",
    'find "$1" -name "*.ko.xz" -print0 | xargs -0 -r -n 64 -P "$(nproc)" xz -d',
    "sh",
    base,
  ]);
  await chroot("depmod", ["depmod", version]);
  return { dirs: dropped, bytes };
}

/** Files whose content depends on when or where the build ran; all are recreated at first boot. */
const NON_REPRODUCIBLE = [
  "etc/machine-id",
  "var/lib/dbus/machine-id",
  "var/lib/systemd/random-seed",
  "var/lib/systemd/catalog/database",
  "var/cache/ldconfig/aux-cache",
  "etc/.pwd.lock",
  "var/lib/dpkg/available-old",
  "var/lib/dpkg/status-old",
  "var/lib/dpkg/diversions-old",
  "var/lib/dpkg/statoverride-old",
  "etc/group-",
  "etc/gshadow-",
  "etc/passwd-",
  "etc/shadow-",
  "etc/subuid-",
  "etc/subgid-",
];

async function normalise(root: string, p: Profile): Promise<void> {
  for (const f of NON_REPRODUCIBLE) await rm(join(root, f), { force: true, recursive: true });
  // Empty: systemd generates the ID at boot and systemd-machine-id-commit stores it in the /etc overlay.
  // Not "uninitialized", which would make it a "first boot" and apply unit presets behind the image's
  // back (enabling units the manifest does not list); berth-ssh-keygen makes the host keys instead.
  await writeFile(join(root, "etc/machine-id"), "");

  for (const f of await readdir(join(root, "etc/ssh")).catch(() => [] as string[]))
    if (f.startsWith("ssh_host_")) await rm(join(root, "etc/ssh", f));
  for (const dir of ["var/log", "var/cache", "tmp", "var/tmp"]) {
    for (const f of await readdir(join(root, dir)).catch(() => [] as string[]))
      await rm(join(root, dir, f), { recursive: true, force: true });
  }
  if (p.cut.packageManager) {
    for (const f of ["var/lib/apt/lists", "var/lib/apt/extended_states"])
      await rm(join(root, f), { recursive: true, force: true });
    await writeFile(join(root, "var/lib/dpkg/available"), "").catch(() => {});
  }
}

/** Every AppArmor profile the profile keeps (cut.apparmorProfiles) must be one the packages installed. */
function checkAppArmorProfiles(root: string, p: Profile): void {
  p.cut.apparmorProfiles?.forEach((name, i) => {
    if (!existsSync(join(root, "etc/apparmor.d", name)))
      throw new UsageError(
        `${whereIs(p, `/cut/apparmorProfiles/${i}`)}: no AppArmor profile "${name}" in /etc/apparmor.d of this image`,
      );
  });
}

/**
 * Marks /etc and /var as up to date with /usr. Without the stamps, every first boot runs the
 * ConditionNeedsUpdate= services (ldconfig, systemd-sysusers, hwdb and journal catalog rebuilds) on the
 * critical path, and their output would land in the /etc overlay, where it would shadow the next
 * image's files. mksquashfs gives /usr and the stamps the same time (SOURCE_DATE_EPOCH), which systemd
 * reads as "updated"; a new /usr from an update is newer and triggers them again, as it should.
 */
async function stampUpdated(root: string, sourceDateEpoch: number): Promise<void> {
  const text = `# Written by berth os build: /etc and /var match this image's /usr (see systemd-update-done.service(8)).\nTIMESTAMP_NSEC=${sourceDateEpoch}000000000\n`;
  for (const dir of ["etc", "var"]) await writeFile(join(root, dir, ".updated"), text);
}

/** The single kernel version installed in the root. */
export async function kernelVersionOf(root: string): Promise<string> {
  const versions = (await readdir(join(root, "usr/lib/modules")).catch(() => [] as string[])).filter((v) =>
    /^\d/.test(v),
  );
  if (versions.length !== 1)
    throw new BerthError(
      `expected one kernel in the image, found ${versions.length}: ${versions.join(", ")}`,
    );
  return versions[0]!;
}

export async function customizeRoot(root: string, p: Profile, o: CustomizeOptions): Promise<CustomizeResult> {
  const progress = o.progress ?? silentProgress;
  const kernelVersion = await kernelVersionOf(root);
  checkAppArmorProfiles(root, p);
  progress.note("configuring: layout, users, units");
  await setupFilesystemLayout(root);
  await setupNetworkNames(root, p);
  const chroot = chrootIn(root, o.sourceDateEpoch);
  await setupUsers(root, p, o.extraKeys ?? [], chroot);
  await setupUnits(root, p, chroot);
  progress.note("trimming: install-time-only packages, kernel modules");
  const purged = await purgeInstallTimeOnly(root, p, chroot);
  const dropped = await dropKernelModules(root, p, kernelVersion, chroot);
  await normalise(root, p);
  await stampUpdated(root, o.sourceDateEpoch);
  return { kernelVersion, purged, droppedModuleDirs: dropped.dirs, droppedModuleBytes: dropped.bytes };
}
