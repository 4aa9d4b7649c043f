// Owners and modes of the files that hold accounts, schedules and daemon configuration, and the
// rules fed by the single file-system walk (world-writable, unowned, SUID/SGID).

import type { Facts } from "../facts.ts";
import {
  type Change,
  FILE_TARGETS,
  fail,
  HOST_TARGETS,
  na,
  pass,
  type Rule,
  type RuleSeverity,
} from "../rule.ts";

interface PermSpec {
  path: string;
  /** Bits that may be set (e.g. 0o644). */
  max: number;
  owner: string;
  group: string | string[];
  severity: RuleSeverity;
  ref: string;
  what: string;
  liveOnly?: boolean;
}

const P = (
  path: string,
  max: number,
  group: string | string[],
  severity: RuleSeverity,
  ref: string,
  what: string,
  owner = "root",
): PermSpec => ({
  path,
  max,
  owner,
  group,
  severity,
  ref,
  what,
});

const PERMS: PermSpec[] = [
  P("/etc/passwd", 0o644, "root", "high", "CIS Debian 12 7.1.1", "the account list"),
  P("/etc/passwd-", 0o644, "root", "medium", "CIS Debian 12 7.1.2", "the account list backup"),
  P("/etc/group", 0o644, "root", "high", "CIS Debian 12 7.1.3", "the group list"),
  P("/etc/group-", 0o644, "root", "medium", "CIS Debian 12 7.1.4", "the group list backup"),
  P("/etc/shadow", 0o640, ["root", "shadow"], "critical", "CIS Debian 12 7.1.5", "password hashes"),
  P("/etc/shadow-", 0o640, ["root", "shadow"], "high", "CIS Debian 12 7.1.6", "the password hash backup"),
  P("/etc/gshadow", 0o640, ["root", "shadow"], "high", "CIS Debian 12 7.1.7", "group password hashes"),
  P("/etc/gshadow-", 0o640, ["root", "shadow"], "medium", "CIS Debian 12 7.1.8", "the group hash backup"),
  P("/etc/shells", 0o644, "root", "low", "CIS Debian 12 7.1.9", "the list of login shells"),
  P("/etc/security/opasswd", 0o600, "root", "medium", "CIS Debian 12 7.1.10", "old password hashes"),
  P("/etc/crontab", 0o600, "root", "medium", "CIS Debian 12 2.4.1.2", "the system crontab"),
  P("/etc/cron.hourly", 0o700, "root", "medium", "CIS Debian 12 2.4.1.3", "hourly jobs"),
  P("/etc/cron.daily", 0o700, "root", "medium", "CIS Debian 12 2.4.1.4", "daily jobs"),
  P("/etc/cron.weekly", 0o700, "root", "medium", "CIS Debian 12 2.4.1.5", "weekly jobs"),
  P("/etc/cron.monthly", 0o700, "root", "medium", "CIS Debian 12 2.4.1.6", "monthly jobs"),
  P("/etc/cron.yearly", 0o700, "root", "medium", "CIS Debian 12 2.4.1.7", "yearly jobs"),
  P("/etc/cron.d", 0o700, "root", "medium", "CIS Debian 12 2.4.1.8", "cron job files"),
  P("/etc/ssh/sshd_config", 0o600, "root", "medium", "CIS Debian 12 5.1.1", "the SSH server configuration"),
  P("/etc/ssh/sshd_config.d", 0o755, "root", "low", "CIS Debian 12 5.1.1", "SSH server drop-ins"),
  P("/etc/sudoers", 0o440, "root", "high", "CIS Debian 12 5.2", "sudo rules"),
  P("/etc/sudoers.d", 0o750, "root", "medium", "CIS Debian 12 5.2", "sudo rule drop-ins"),
  P("/etc/issue", 0o644, "root", "low", "CIS Debian 12 1.7.4", "the local login banner"),
  P("/etc/issue.net", 0o644, "root", "low", "CIS Debian 12 1.7.5", "the remote login banner"),
  P("/etc/motd", 0o644, "root", "low", "CIS Debian 12 1.7.6", "the message of the day"),
  P("/etc/hosts.allow", 0o644, "root", "low", "CIS Debian 11 3.4.4", "TCP wrapper rules"),
  P("/etc/hosts.deny", 0o644, "root", "low", "CIS Debian 11 3.4.5", "TCP wrapper rules"),
  P("/etc/fstab", 0o644, "root", "medium", "Lynis FILE-6310", "mount configuration"),
  P("/etc/login.defs", 0o644, "root", "low", "Lynis AUTH-9286", "login defaults"),
  P("/etc/security/limits.conf", 0o644, "root", "low", "Lynis KRNL-5820", "resource limits"),
  P("/etc/sysctl.conf", 0o644, "root", "low", "Lynis KRNL-6000", "kernel parameters"),
  P("/boot/grub/grub.cfg", 0o600, "root", "medium", "CIS Debian 12 1.4.2", "the boot loader configuration"),
  P("/root", 0o700, "root", "medium", "CIS Debian 12 7.2.9", "root's home"),
  P("/etc/docker", 0o755, "root", "medium", "CIS Docker 3.7", "Docker's configuration directory"),
  P("/etc/docker/daemon.json", 0o644, "root", "medium", "CIS Docker 3.17", "Docker daemon settings"),
  P("/etc/default/docker", 0o644, "root", "low", "CIS Docker 3.21", "Docker daemon flags"),
  P("/lib/systemd/system/docker.service", 0o644, "root", "medium", "CIS Docker 3.1", "the Docker unit"),
  P("/lib/systemd/system/docker.socket", 0o644, "root", "medium", "CIS Docker 3.3", "the Docker socket unit"),
  P("/etc/containerd/config.toml", 0o644, "root", "medium", "CIS Docker 3.23", "containerd settings"),
  {
    ...P("/var/run/docker.sock", 0o660, "docker", "critical", "CIS Docker 3.15", "the Docker API socket"),
    liveOnly: true,
  },
  {
    ...P(
      "/run/containerd/containerd.sock",
      0o660,
      "root",
      "critical",
      "CIS Docker 3.23",
      "the containerd API socket",
    ),
    liveOnly: true,
  },
];

const userId = (f: Facts, name: string) =>
  f.passwd().find((p) => p.name === name)?.uid ?? (name === "root" ? 0 : -1);
const groupId = (f: Facts, name: string) =>
  f.groups().find((g) => g.name === name)?.gid ?? (name === "root" ? 0 : -1);

function permRule(s: PermSpec): Rule {
  const groups = Array.isArray(s.group) ? s.group : [s.group];
  return {
    id: `perm-${s.path.slice(1).replace(/[/.]+/g, "-").replace(/-+$/, "-backup")}`,
    title: `${s.path} is owned by ${s.owner}:${groups.join(" or ")} with mode ${s.max.toString(8)} or stricter`,
    category: "file permissions",
    severity: s.severity,
    rationale: `${s.path} holds ${s.what}; anyone who can change it, or read more than intended, gains a foothold.`,
    refs: [s.ref],
    targets: s.liveOnly ? ["host"] : HOST_TARGETS,
    check: (f) => {
      const st = f.stat(s.path);
      if (!st || st.isSymbolicLink()) return na(`${s.path} does not exist`);
      const bad: string[] = [];
      const extra = st.mode & 0o7777 & ~s.max;
      if (extra) bad.push(`mode ${(st.mode & 0o7777).toString(8)}`);
      if (st.uid !== userId(f, s.owner)) bad.push(`owner uid ${st.uid}`);
      const gids = groups.map((g) => groupId(f, g));
      if (!gids.includes(st.gid)) bad.push(`group gid ${st.gid}`);
      return bad.length
        ? fail(`${s.path}: ${bad.join(", ")}`)
        : pass(`${s.path}: ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
    },
    advice: `chown ${s.owner}:${groups[0]} ${s.path} && chmod ${s.max.toString(8)} ${s.path}`,
    fix: (f) => {
      const st = f.stat(s.path);
      if (!st) return [];
      const out: Change[] = [];
      const extra = st.mode & 0o7777 & ~s.max;
      if (extra) out.push({ kind: "chmod", path: s.path, clear: extra });
      const uid = userId(f, s.owner);
      const gids = groups.map((g) => groupId(f, g)).filter((g) => g >= 0);
      if (uid < 0 || !gids.length) return out;
      if (st.uid !== uid || !gids.includes(st.gid))
        out.push({ kind: "chown", path: s.path, uid, gid: gids.includes(st.gid) ? st.gid : gids[0]! });
      return out;
    },
  };
}

/** SUID/SGID programs Debian ships and a container host may keep. */
const EXPECTED_SUID = new Set([
  "/usr/bin/passwd",
  "/usr/bin/su",
  "/usr/bin/sudo",
  "/usr/bin/mount",
  "/usr/bin/umount",
  "/usr/bin/chsh",
  "/usr/bin/chfn",
  "/usr/bin/gpasswd",
  "/usr/bin/newgrp",
  "/usr/bin/newuidmap",
  "/usr/bin/newgidmap",
  "/usr/bin/fusermount",
  "/usr/bin/fusermount3",
  "/usr/bin/pkexec",
  "/usr/lib/dbus-1.0/dbus-daemon-launch-helper",
  "/usr/lib/openssh/ssh-keysign",
  "/usr/lib/polkit-1/polkit-agent-helper-1",
  "/usr/libexec/polkit-agent-helper-1",
  "/usr/lib/chromium/chrome-sandbox",
  "/usr/sbin/pppd",
]);
const EXPECTED_SGID = new Set([
  "/usr/bin/chage",
  "/usr/bin/expiry",
  "/usr/bin/ssh-agent",
  "/usr/bin/crontab",
  "/usr/bin/wall",
  "/usr/bin/bsd-write",
  "/usr/bin/dotlockfile",
  "/usr/bin/write.ul",
  "/usr/sbin/unix_chkpwd",
  "/usr/sbin/pam_extrausers_chkpwd",
  "/usr/bin/plocate",
  "/usr/bin/mlocate",
  "/usr/lib/x86_64-linux-gnu/utempter/utempter",
  "/usr/libexec/dma-mbox-create",
]);
/** Debian's merged /usr: /bin and /sbin are links, so the same program may be reached either way. */
const norm = (p: string) => p.replace(/^\/(s?bin|lib)\//, "/usr/$1/");

const walkRule = (
  id: string,
  title: string,
  severity: RuleSeverity,
  ref: string,
  rationale: string,
  advice: string,
  pick: (f: Facts) => { path: string; mode: number; uid: number; gid: number }[],
): Rule => ({
  id,
  title,
  category: "file system",
  severity,
  rationale,
  refs: [ref],
  targets: FILE_TARGETS,
  check: (f) => {
    const items = pick(f);
    const w = f.walk();
    if (!items.length) return pass(`none among ${w.files} files`);
    return fail(
      `${items.length}${items.length >= 500 ? "+" : ""} found among ${w.files} files`,
      items.map((i) => `${i.path} (${i.mode.toString(8)} ${i.uid}:${i.gid})`),
    );
  },
  advice,
});

export const fileRules: Rule[] = [
  ...PERMS.map(permRule),
  {
    id: "perm-ssh-host-private-keys",
    title: "SSH host private keys are readable by root only",
    category: "file permissions",
    severity: "high",
    rationale: "A stolen host key lets an attacker impersonate the server.",
    refs: ["CIS Debian 12 5.1.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      const keys = f.list("/etc/ssh").filter((n) => /^ssh_host_.*_key$/.test(n));
      if (!keys.length) return na("no host keys");
      const bad = keys.filter((k) => {
        const st = f.stat(`/etc/ssh/${k}`);
        return st && (st.mode & 0o077 || st.uid !== 0);
      });
      return bad.length
        ? fail(`${bad.length} host keys readable beyond root`, bad)
        : pass(`${keys.length} host keys are 600 root`);
    },
    advice: "chmod 600 /etc/ssh/ssh_host_*_key && chown root:root /etc/ssh/ssh_host_*_key",
    fix: (f) =>
      f
        .list("/etc/ssh")
        .filter((n) => /^ssh_host_.*_key$/.test(n))
        .flatMap((k): Change[] => {
          const st = f.stat(`/etc/ssh/${k}`);
          if (!st) return [];
          const out: Change[] = [];
          if (st.mode & 0o077) out.push({ kind: "chmod", path: `/etc/ssh/${k}`, clear: st.mode & 0o077 });
          if (st.uid !== 0 || st.gid !== 0)
            out.push({ kind: "chown", path: `/etc/ssh/${k}`, uid: 0, gid: 0 });
          return out;
        }),
  },
  {
    id: "perm-ssh-host-public-keys",
    title: "SSH host public keys are not writable by others",
    category: "file permissions",
    severity: "low",
    rationale: "A replaced public key breaks clients' trust in the host.",
    refs: ["CIS Debian 12 5.1.3"],
    targets: HOST_TARGETS,
    check: (f) => {
      const keys = f.list("/etc/ssh").filter((n) => /^ssh_host_.*_key\.pub$/.test(n));
      if (!keys.length) return na("no host keys");
      const bad = keys.filter((k) => (f.stat(`/etc/ssh/${k}`)?.mode ?? 0) & 0o022);
      return bad.length
        ? fail(`${bad.length} public keys writable by others`, bad)
        : pass(`${keys.length} public keys are 644`);
    },
    advice: "chmod 644 /etc/ssh/ssh_host_*_key.pub",
  },
  walkRule(
    "fs-world-writable-files",
    "No world-writable files",
    "medium",
    "CIS Debian 12 7.1.11",
    "Anyone can change a world-writable file, including what programs read or run.",
    "Remove the others-write bit (chmod o-w) or move the data to a private directory.",
    (f) => f.walk().worldWritableFiles,
  ),
  walkRule(
    "fs-world-writable-dirs-sticky",
    "World-writable directories have the sticky bit",
    "medium",
    "CIS Debian 12 7.1.11",
    "Without the sticky bit, anyone can delete or replace others' files in the directory.",
    "chmod +t on each listed directory (or remove others-write).",
    (f) => f.walk().worldWritableDirs,
  ),
  walkRule(
    "fs-unowned-files",
    "Every file's owner is a known account",
    "medium",
    "CIS Debian 12 7.1.12",
    "A new account given a recycled UID would own these files.",
    "chown each listed file to an existing account, or remove it.",
    (f) => f.walk().unowned,
  ),
  walkRule(
    "fs-ungrouped-files",
    "Every file's group is a known group",
    "low",
    "CIS Debian 12 7.1.12",
    "A new group given a recycled GID would own these files.",
    "chgrp each listed file to an existing group, or remove it.",
    (f) => f.walk().ungrouped,
  ),
  walkRule(
    "fs-suid-unexpected",
    "No set-user-ID programs beyond Debian's usual ones",
    "high",
    "CIS Debian 12 7.1.13",
    "Every SUID program is a way to root if it has a bug; unknown ones are the first thing to look at.",
    "Review each listed program; remove the bit (chmod u-s) where it is not needed.",
    (f) => f.walk().suid.filter((e) => !EXPECTED_SUID.has(norm(e.path))),
  ),
  walkRule(
    "fs-sgid-unexpected",
    "No set-group-ID programs beyond Debian's usual ones",
    "medium",
    "CIS Debian 12 7.1.13",
    "An SGID program runs with its group's rights, such as reading shadow or writing terminals.",
    "Review each listed program; remove the bit (chmod g-s) where it is not needed.",
    (f) => f.walk().sgid.filter((e) => !EXPECTED_SGID.has(norm(e.path))),
  ),
];
