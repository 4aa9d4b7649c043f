// Accounts, passwords and PAM: who can log in, how passwords are stored and aged, and how sudo and su
// are limited.

import { parseKeyValueSpace } from "../config.ts";
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

const loginDefs = (f: Facts) => parseKeyValueSpace(f.read("/etc/login.defs") ?? "");

function loginDefsRule(
  key: string,
  ok: (v: string) => boolean,
  set: string,
  want: string,
  severity: RuleSeverity,
  ref: string,
  title: string,
  rationale: string,
): Rule {
  return {
    id: `login-defs-${key.toLowerCase().replaceAll("_", "-")}`,
    title,
    category: "passwords",
    severity,
    rationale,
    refs: [ref],
    targets: HOST_TARGETS,
    check: (f) => {
      if (f.read("/etc/login.defs") === undefined) return na("no /etc/login.defs");
      const v = loginDefs(f).get(key);
      return v !== undefined && ok(v) ? pass(`${key} ${v}`) : fail(`${key} ${v ?? "unset"}; want ${want}`);
    },
    advice: `Set \`${key} ${set}\` in /etc/login.defs (existing accounts keep their values; use chage).`,
    fix: () => [
      { kind: "lines", path: "/etc/login.defs", syntax: "space", lines: [{ key, line: `${key}\t${set}` }] },
    ],
  };
}

const pamText = (f: Facts, name: string) =>
  (f.read(`/etc/pam.d/${name}`) ?? "")
    .split("\n")
    .filter((l) => !l.trim().startsWith("#"))
    .join("\n");

const sudoers = (f: Facts) =>
  [f.read("/etc/sudoers") ?? "", ...f.list("/etc/sudoers.d").map((n) => f.read(`/etc/sudoers.d/${n}`) ?? "")]
    .join("\n")
    .split("\n")
    .filter((l) => !l.trim().startsWith("#") || l.trim().startsWith("#include"));

export const SUDOERS_DROP_IN = "/etc/sudoers.d/berth-harden";

function sudoDefaultsRule(
  id: string,
  setting: string,
  test: RegExp,
  title: string,
  rationale: string,
  ref: string,
): Rule {
  return {
    id,
    title,
    category: "privilege escalation",
    severity: "low",
    rationale,
    refs: [ref],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("sudo")) return na("sudo is not installed");
      return sudoers(f).some((l) => test.test(l))
        ? pass(`Defaults ${setting}`)
        : fail(`no \`Defaults ${setting}\``);
    },
    advice: `Add \`Defaults ${setting}\` to a file in /etc/sudoers.d/ (edit with visudo).`,
    fix: (f) =>
      f.hasPackage("sudo")
        ? [
            {
              kind: "lines",
              path: SUDOERS_DROP_IN,
              syntax: "space",
              mode: 0o440,
              header: "# Set by berth harden.",
              lines: [{ key: `Defaults ${setting.split("=")[0]}`, line: `Defaults ${setting}` }],
            },
          ]
        : [],
  };
}

export const accountRules: Rule[] = [
  loginDefsRule(
    "PASS_MAX_DAYS",
    (v) => Number(v) > 0 && Number(v) <= 365,
    "365",
    "365 or fewer",
    "medium",
    "CIS Debian 12 5.4.1.1",
    "Passwords expire within a year",
    "A leaked password stops working eventually.",
  ),
  loginDefsRule(
    "PASS_MIN_DAYS",
    (v) => Number(v) >= 1,
    "1",
    "1 or more",
    "low",
    "CIS Debian 12 5.4.1.2",
    "Passwords cannot be changed back at once",
    "Stops cycling through changes to reuse an old password.",
  ),
  loginDefsRule(
    "PASS_WARN_AGE",
    (v) => Number(v) >= 7,
    "7",
    "7 or more",
    "low",
    "CIS Debian 12 5.4.1.3",
    "Users are warned a week before expiry",
    "Users change passwords before they are locked out.",
  ),
  loginDefsRule(
    "ENCRYPT_METHOD",
    (v) => ["SHA512", "YESCRYPT"].includes(v.toUpperCase()),
    "YESCRYPT",
    "SHA512 or YESCRYPT",
    "medium",
    "CIS Debian 12 5.4.1.4",
    "New password hashes use a strong method",
    "Weak hashes fall quickly to offline cracking.",
  ),
  loginDefsRule(
    "UMASK",
    (v) => (Number.parseInt(v, 8) & 0o027) === 0o027,
    "027",
    "027 or stricter",
    "low",
    "CIS Debian 12 5.4.3.3",
    "The default umask keeps new files private to the group",
    "Files created by default are not readable by every user.",
  ),
  {
    id: "useradd-inactive",
    title: "Accounts lock 45 days after their password expires",
    category: "passwords",
    severity: "low",
    rationale: "Dormant accounts with expired passwords are locked rather than left for reuse.",
    refs: ["CIS Debian 12 5.4.1.5"],
    targets: HOST_TARGETS,
    check: (f) => {
      const m = /^INACTIVE=(-?\d+)/m.exec(f.read("/etc/default/useradd") ?? "");
      const v = m ? Number(m[1]) : -1;
      return v >= 0 && v <= 45 ? pass(`INACTIVE=${v}`) : fail(`INACTIVE=${v}; want 0 to 45`);
    },
    advice: "useradd -D -f 30",
    fix: () => [
      {
        kind: "lines",
        path: "/etc/default/useradd",
        syntax: "ini-equals",
        lines: [{ key: "INACTIVE", line: "INACTIVE=30" }],
      },
    ],
  },
  {
    id: "accounts-uid0-root-only",
    title: "root is the only account with UID 0",
    category: "accounts",
    severity: "critical",
    rationale: "A second UID 0 account is a root backdoor with another name.",
    refs: ["CIS Debian 12 5.4.2.1"],
    targets: FILE_TARGETS,
    check: (f) => {
      const others = f
        .passwd()
        .filter((p) => p.uid === 0 && p.name !== "root")
        .map((p) => p.name);
      return others.length ? fail(`UID 0: ${others.join(", ")}`, others) : pass("only root has UID 0");
    },
    advice: "Remove the extra UID 0 accounts or give them their own UID.",
  },
  {
    id: "accounts-gid0-root-only",
    title: "root is the only account whose primary group is GID 0",
    category: "accounts",
    severity: "medium",
    rationale: "Files readable by group root are readable by these accounts.",
    refs: ["CIS Debian 12 5.4.2.2"],
    targets: FILE_TARGETS,
    check: (f) => {
      const others = f
        .passwd()
        .filter((p) => p.gid === 0 && !["root", "sync", "shutdown", "halt", "operator"].includes(p.name))
        .map((p) => p.name);
      return others.length ? fail(`GID 0: ${others.join(", ")}`, others) : pass("only root is in group 0");
    },
    advice: "usermod -g <group> each listed account.",
  },
  {
    id: "accounts-no-empty-passwords",
    title: "No account has an empty password",
    category: "accounts",
    severity: "critical",
    rationale: "An empty password lets anyone log in where passwords are accepted.",
    refs: ["CIS Debian 12 7.2.2"],
    targets: FILE_TARGETS,
    check: (f) => {
      if (f.read("/etc/shadow") === undefined) return na("no /etc/shadow");
      const empty = f
        .shadow()
        .filter((s) => s.hash === "")
        .map((s) => s.name);
      return empty.length
        ? fail(`empty password: ${empty.join(", ")}`, empty)
        : pass("every account has a password or is locked");
    },
    advice: "passwd -l each listed account (or set a password).",
  },
  {
    id: "accounts-shadowed",
    title: "Password hashes live in /etc/shadow",
    category: "accounts",
    severity: "high",
    rationale: "/etc/passwd is world-readable; a hash there can be cracked offline by anyone.",
    refs: ["CIS Debian 12 7.2.1"],
    targets: FILE_TARGETS,
    check: (f) => {
      const bad = f
        .passwd()
        .filter((p) => p.password !== "x" && p.password !== "*" && p.password !== "!")
        .map((p) => p.name);
      return bad.length ? fail(`not shadowed: ${bad.join(", ")}`, bad) : pass("all accounts are shadowed");
    },
    advice: "pwconv",
  },
  {
    id: "accounts-unique-uids",
    title: "UIDs are unique",
    category: "accounts",
    severity: "medium",
    rationale: "Two names for one UID share every file and permission.",
    refs: ["CIS Debian 12 7.2.5"],
    targets: FILE_TARGETS,
    check: (f) =>
      dupes(
        f.passwd().map((p) => String(p.uid)),
        "UID",
      ),
    advice: "Give each listed account its own UID.",
  },
  {
    id: "accounts-unique-gids",
    title: "GIDs are unique",
    category: "accounts",
    severity: "low",
    rationale: "Two names for one GID share every group permission.",
    refs: ["CIS Debian 12 7.2.6"],
    targets: FILE_TARGETS,
    check: (f) =>
      dupes(
        f.groups().map((g) => String(g.gid)),
        "GID",
      ),
    advice: "Give each listed group its own GID.",
  },
  {
    id: "accounts-unique-names",
    title: "Account names are unique",
    category: "accounts",
    severity: "medium",
    rationale: "Duplicate names make it unclear which entry a login uses.",
    refs: ["CIS Debian 12 7.2.7"],
    targets: FILE_TARGETS,
    check: (f) =>
      dupes(
        f.passwd().map((p) => p.name),
        "name",
      ),
    advice: "Remove or rename the duplicates.",
  },
  {
    id: "accounts-unique-group-names",
    title: "Group names are unique",
    category: "accounts",
    severity: "low",
    rationale: "Duplicate group names make group rules ambiguous.",
    refs: ["CIS Debian 12 7.2.8"],
    targets: FILE_TARGETS,
    check: (f) =>
      dupes(
        f.groups().map((g) => g.name),
        "group name",
      ),
    advice: "Remove or rename the duplicates.",
  },
  {
    id: "accounts-system-nologin",
    title: "System accounts cannot log in",
    category: "accounts",
    severity: "medium",
    rationale: "Service accounts with a shell are a login nobody watches.",
    refs: ["CIS Debian 12 5.4.2.7"],
    targets: FILE_TARGETS,
    check: (f) => {
      const bad = f
        .passwd()
        .filter((p) => p.uid > 0 && p.uid < 1000 && !["sync", "shutdown", "halt"].includes(p.name))
        .filter((p) => !/(nologin|false)$/.test(p.shell) && p.shell !== "")
        .map((p) => `${p.name} (${p.shell})`);
      return bad.length
        ? fail(`${bad.length} system accounts with a login shell`, bad)
        : pass("system accounts use nologin");
    },
    advice: "usermod -s /usr/sbin/nologin each listed account.",
  },
  {
    id: "accounts-no-nis-entries",
    title: "No legacy '+' NIS entries in account files",
    category: "accounts",
    severity: "medium",
    rationale: "'+' lines pull in accounts from NIS, which may not exist and leaves a hole.",
    refs: ["CIS Debian 10 6.2.2"],
    targets: FILE_TARGETS,
    check: (f) => {
      const bad = ["/etc/passwd", "/etc/shadow", "/etc/group"].filter((p) => /^\+/m.test(f.read(p) ?? ""));
      return bad.length ? fail(`'+' entries in ${bad.join(", ")}`, bad) : pass("no '+' entries");
    },
    advice: "Remove lines starting with '+'.",
  },
  {
    id: "accounts-shadow-group-empty",
    title: "The shadow group has no members",
    category: "accounts",
    severity: "medium",
    rationale: "Members of shadow can read every password hash.",
    refs: ["CIS Debian 12 7.2.4"],
    targets: FILE_TARGETS,
    check: (f) => {
      const g = f.groups().find((x) => x.name === "shadow");
      if (!g) return na("no shadow group");
      const primary = f
        .passwd()
        .filter((p) => p.gid === g.gid)
        .map((p) => p.name);
      const members = [...g.members, ...primary];
      return members.length
        ? fail(`shadow group members: ${members.join(", ")}`, members)
        : pass("shadow has no members");
    },
    advice: "Remove users from the shadow group.",
  },
  {
    id: "accounts-root-path",
    title: "root's PATH has no empty, relative or writable entries",
    category: "accounts",
    severity: "medium",
    rationale: "A writable or relative PATH entry lets another user plant a program root runs.",
    refs: ["CIS Debian 12 7.2.9"],
    targets: ["host"],
    check: () => {
      const entries = (process.env.PATH ?? "").split(":");
      const bad = entries.filter((e) => e === "" || e === "." || !e.startsWith("/"));
      return bad.length
        ? fail(`PATH has ${bad.map((b) => JSON.stringify(b)).join(", ")}`)
        : pass(`PATH ${process.env.PATH}`);
    },
    advice: "Remove empty, '.' and relative entries from root's PATH.",
  },
  {
    id: "pam-pwquality-installed",
    title: "Password quality is checked (pam_pwquality)",
    category: "passwords",
    severity: "low",
    rationale: "Without it any password, however short, is accepted.",
    refs: ["CIS Debian 12 5.3.1.3"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.hasPackage("libpam-pwquality")
        ? pass("libpam-pwquality is installed")
        : fail("libpam-pwquality is not installed"),
    advice: "apt-get install libpam-pwquality",
  },
  {
    id: "pam-pwquality-minlen",
    title: "Passwords are at least 14 characters",
    category: "passwords",
    severity: "medium",
    rationale: "Length is what makes passwords expensive to guess.",
    refs: ["CIS Debian 12 5.3.3.2.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("libpam-pwquality")) return na("libpam-pwquality is not installed");
      const texts = [
        f.read("/etc/security/pwquality.conf") ?? "",
        ...f.dropIns("/etc/security/pwquality.conf.d"),
      ].join("\n");
      const m = [...texts.matchAll(/^\s*minlen\s*=\s*(\d+)/gm)].pop();
      const v = m ? Number(m[1]) : 8;
      return v >= 14 ? pass(`minlen = ${v}`) : fail(`minlen = ${v}${m ? "" : " (default)"}; want 14`);
    },
    advice: "Set minlen = 14 in /etc/security/pwquality.conf.d/.",
    fix: (f): Change[] =>
      f.hasPackage("libpam-pwquality")
        ? [
            {
              kind: "lines",
              path: "/etc/security/pwquality.conf.d/berth-harden.conf",
              syntax: "sysctl",
              header: "# Set by berth harden.",
              lines: [{ key: "minlen", line: "minlen = 14" }],
            },
          ]
        : [],
  },
  {
    id: "pam-faillock",
    title: "Repeated failed logins lock the account (pam_faillock)",
    category: "passwords",
    severity: "low",
    rationale: "Without lockout, online guessing is limited only by speed.",
    refs: ["CIS Debian 12 5.3.3.1"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.read("/etc/pam.d/common-auth") === undefined
        ? na("no PAM configuration")
        : /pam_faillock\.so/.test(pamText(f, "common-auth"))
          ? pass("pam_faillock is in common-auth")
          : fail("pam_faillock is not in common-auth"),
    advice: "Enable pam_faillock in /etc/pam.d/common-auth (pam-auth-update with a faillock profile).",
  },
  {
    id: "pam-pwhistory",
    title: "Recent passwords cannot be reused (pam_pwhistory)",
    category: "passwords",
    severity: "low",
    rationale: "Reuse brings back a password that may have leaked.",
    refs: ["CIS Debian 12 5.3.3.3"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.read("/etc/pam.d/common-password") === undefined
        ? na("no PAM configuration")
        : /pam_pwhistory\.so/.test(pamText(f, "common-password"))
          ? pass("pam_pwhistory is in common-password")
          : fail("pam_pwhistory is not in common-password"),
    advice: "Add pam_pwhistory.so remember=24 enforce_for_root to /etc/pam.d/common-password.",
  },
  {
    id: "pam-no-nullok",
    title: "PAM does not accept empty passwords (no nullok)",
    category: "passwords",
    severity: "high",
    rationale: "nullok lets an account with an empty password log in without one.",
    refs: ["CIS Debian 12 5.3.3.4.1"],
    targets: HOST_TARGETS,
    check: (f) => {
      const files = ["common-auth", "common-password"].filter((n) =>
        /pam_unix\.so.*\bnullok\b/.test(pamText(f, n)),
      );
      if (f.read("/etc/pam.d/common-auth") === undefined) return na("no PAM configuration");
      return files.length ? fail(`nullok in ${files.join(", ")}`, files) : pass("no nullok");
    },
    advice: "Remove nullok from pam_unix.so lines in /etc/pam.d/common-auth and common-password.",
    fix: (f) =>
      ["common-auth", "common-password"]
        .filter((n) => /pam_unix\.so.*\bnullok\b/.test(pamText(f, n)))
        .map(
          (n): Change => ({
            kind: "drop-token",
            path: `/etc/pam.d/${n}`,
            linePattern: "pam_unix\\.so",
            token: "nullok",
          }),
        ),
  },
  {
    id: "pam-strong-hash",
    title: "pam_unix stores new passwords with a strong hash",
    category: "passwords",
    severity: "medium",
    rationale: "MD5 and DES hashes fall to offline cracking in minutes.",
    refs: ["CIS Debian 12 5.3.3.4.3"],
    targets: HOST_TARGETS,
    check: (f) => {
      const text = pamText(f, "common-password");
      if (!text) return na("no PAM configuration");
      const line = text.split("\n").find((l) => /pam_unix\.so/.test(l));
      if (!line) return na("pam_unix is not used");
      return /\b(sha512|yescrypt)\b/.test(line) || !/\b(md5|bigcrypt|blowfish|sha256)\b/.test(line)
        ? pass(line.trim())
        : fail(line.trim());
    },
    advice: "Use yescrypt (or sha512) on the pam_unix.so line in /etc/pam.d/common-password.",
  },
  {
    id: "pam-su-restricted",
    title: "su is limited to a group (pam_wheel)",
    category: "privilege escalation",
    severity: "low",
    rationale: "Anyone with root's password could otherwise become root from any account.",
    refs: ["CIS Debian 12 5.2.7"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.read("/etc/pam.d/su") === undefined
        ? na("no /etc/pam.d/su")
        : /^\s*auth\s+required\s+pam_wheel\.so/m.test(pamText(f, "su"))
          ? pass("pam_wheel is required")
          : fail("pam_wheel is not required for su"),
    advice: "Uncomment `auth required pam_wheel.so` in /etc/pam.d/su (with group=sudo, or an empty group).",
  },
  sudoDefaultsRule(
    "sudo-use-pty",
    "use_pty",
    /^\s*Defaults\s+.*\buse_pty\b/,
    "sudo runs commands in a pseudo-terminal",
    "Stops a command run with sudo from injecting input into the calling terminal.",
    "CIS Debian 12 5.2.2",
  ),
  sudoDefaultsRule(
    "sudo-logfile",
    "logfile=/var/log/sudo.log",
    /^\s*Defaults\s+.*\blogfile\s*=/,
    "sudo keeps its own log",
    "A separate log of sudo use survives journal rotation and is easy to audit.",
    "CIS Debian 12 5.2.3",
  ),
  {
    id: "sudo-no-nopasswd",
    title: "sudo asks for a password",
    category: "privilege escalation",
    severity: "medium",
    rationale: "NOPASSWD turns any compromise of the account into root.",
    refs: ["CIS Debian 12 5.2.4"],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("sudo")) return na("sudo is not installed");
      const bad = sudoers(f).filter((l) => /NOPASSWD/.test(l) && !l.trim().startsWith("#"));
      return bad.length
        ? fail(
            `${bad.length} NOPASSWD rules`,
            bad.map((l) => l.trim()),
          )
        : pass("no NOPASSWD rules");
    },
    advice: "Remove NOPASSWD from sudoers rules for interactive administrators.",
  },
];

function dupes(values: string[], what: string) {
  const seen = new Set<string>();
  const d = new Set<string>();
  for (const v of values) (seen.has(v) ? d : seen).add(v);
  return d.size ? fail(`duplicate ${what}: ${[...d].join(", ")}`, [...d]) : pass(`${values.length} unique`);
}
