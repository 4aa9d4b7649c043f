// The SSH server as sshd will run it: sshd_config with its Include drop-ins, first value wins, and
// OpenSSH's defaults for what nobody set. Fixes go into a drop-in that sorts first, so they win.

import type { Facts } from "../facts.ts";
import { type Change, fail, HOST_TARGETS, na, pass, type Rule, type RuleSeverity } from "../rule.ts";

export const SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-berth-harden.conf";

interface SshSpec {
  keyword: string;
  /** OpenSSH's value when the keyword is absent. */
  default: string;
  ok: (v: string) => boolean;
  /** What the fix sets; no fix when absent. */
  set?: string;
  want: string;
  severity: RuleSeverity;
  ref: string;
  title: string;
  rationale: string;
  guard?: (f: Facts) => string | undefined;
}

const num = (v: string) => Number.parseInt(v, 10);
const lower = (v: string) => v.toLowerCase();
const WEAK_CIPHERS =
  /(^|,)(3des-cbc|aes\d+-cbc|arcfour\w*|blowfish-cbc|cast128-cbc|rijndael-cbc@lysator\.liu\.se)(,|$)/;
const WEAK_MACS = /(^|,)(hmac-md5\S*|hmac-ripemd160\S*|hmac-sha1-96\S*|umac-64\S*)(,|$)/;
const WEAK_KEX =
  /(^|,)(diffie-hellman-group1-sha1|diffie-hellman-group14-sha1|diffie-hellman-group-exchange-sha1)(,|$)/;
const STRONG_MACS =
  "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-512,hmac-sha2-256";

/** Accounts that can administer the host (root, sudo or wheel members) and have SSH keys. */
export function adminsWithKeys(f: Facts): string[] {
  const admins = new Set(
    f
      .groups()
      .filter((g) => g.name === "sudo" || g.name === "wheel")
      .flatMap((g) => g.members),
  );
  const gidAdmin = new Set(
    f
      .groups()
      .filter((g) => g.name === "sudo" || g.name === "wheel")
      .map((g) => g.gid),
  );
  return f
    .passwd()
    .filter((p) => p.uid === 0 || admins.has(p.name) || gidAdmin.has(p.gid))
    .filter((p) => /^(ssh-|ecdsa-|sk-)/m.test(f.read(`${p.home}/.ssh/authorized_keys`) ?? ""))
    .map((p) => p.name);
}

/** Refuse to close password or root login unless an administrator can still get in with a key. */
const keyLoginGuard = (needNonRoot: boolean) => (f: Facts) => {
  const admins = adminsWithKeys(f).filter((n) => !needNonRoot || n !== "root");
  return admins.length
    ? undefined
    : `no ${needNonRoot ? "non-root " : ""}administrator (root, sudo or wheel) has an SSH key in ~/.ssh/authorized_keys; this change would lock everyone out`;
};

const SPECS: SshSpec[] = [
  {
    keyword: "PermitRootLogin",
    default: "prohibit-password",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "high",
    ref: "CIS Debian 12 5.1.20",
    title: "root cannot log in over SSH",
    rationale:
      "Administrators log in as themselves and escalate, which leaves a trail; root is every attacker's first guess.",
    guard: keyLoginGuard(true),
  },
  {
    keyword: "PasswordAuthentication",
    default: "yes",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "medium",
    ref: "Lynis SSH-7408",
    title: "SSH does not accept passwords",
    rationale: "Keys cannot be guessed; passwords are brute-forced around the clock on any public address.",
    guard: keyLoginGuard(false),
  },
  {
    keyword: "PermitEmptyPasswords",
    default: "no",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "critical",
    ref: "CIS Debian 12 5.1.19",
    title: "SSH refuses empty passwords",
    rationale: "An account without a password would be open to anyone.",
  },
  {
    keyword: "HostbasedAuthentication",
    default: "no",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "medium",
    ref: "CIS Debian 12 5.1.9",
    title: "Host-based authentication is off",
    rationale: "Trusting other hosts' word for a user spreads one compromise to all.",
  },
  {
    keyword: "IgnoreRhosts",
    default: "yes",
    ok: (v) => lower(v) === "yes",
    set: "yes",
    want: "yes",
    severity: "medium",
    ref: "CIS Debian 12 5.1.10",
    title: ".rhosts files are ignored",
    rationale: "rhosts trust is a relic that lets users grant access without keys.",
  },
  {
    keyword: "X11Forwarding",
    default: "no",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "medium",
    ref: "CIS Debian 12 5.1.22",
    title: "X11 forwarding is off",
    rationale: "A container host has no display; X11 forwarding only exposes the client's display.",
  },
  {
    keyword: "AllowTcpForwarding",
    default: "yes",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "low",
    ref: "CIS Debian 12 5.1.4",
    title: "TCP forwarding is off",
    rationale: "Forwarding turns the host into a tunnel past the firewall.",
  },
  {
    keyword: "AllowAgentForwarding",
    default: "yes",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "low",
    ref: "Lynis SSH-7408",
    title: "Agent forwarding is off",
    rationale: "A forwarded agent can be used by root on the host to log in elsewhere as the user.",
  },
  {
    keyword: "MaxAuthTries",
    default: "6",
    ok: (v) => num(v) <= 4,
    set: "4",
    want: "4 or fewer",
    severity: "low",
    ref: "CIS Debian 12 5.1.16",
    title: "At most 4 authentication attempts per connection",
    rationale: "Fewer attempts per connection slows online guessing.",
  },
  {
    keyword: "MaxSessions",
    default: "10",
    ok: (v) => num(v) <= 10,
    set: "10",
    want: "10 or fewer",
    severity: "low",
    ref: "CIS Debian 12 5.1.18",
    title: "At most 10 sessions per connection",
    rationale: "Limits resource use by one connection.",
  },
  {
    keyword: "MaxStartups",
    default: "10:30:100",
    ok: (v) => {
      const [a, b, c] = v.split(":").map(num);
      return (a ?? 99) <= 10 && (b ?? 0) >= 30 && (c ?? 999) <= 60;
    },
    set: "10:30:60",
    want: "10:30:60 or stricter",
    severity: "low",
    ref: "CIS Debian 12 5.1.17",
    title: "Unauthenticated connections are limited",
    rationale: "Limits pre-authentication denial of service.",
  },
  {
    keyword: "LoginGraceTime",
    default: "120",
    ok: (v) => num(v) > 0 && num(v) <= 60,
    set: "60",
    want: "1 to 60 seconds",
    severity: "low",
    ref: "CIS Debian 12 5.1.15",
    title: "Login must complete within 60 seconds",
    rationale: "Half-open logins tie up slots an attacker can exhaust.",
  },
  {
    keyword: "ClientAliveInterval",
    default: "0",
    ok: (v) => num(v) > 0 && num(v) <= 300,
    set: "300",
    want: "1 to 300",
    severity: "low",
    ref: "CIS Debian 12 5.1.7",
    title: "Idle sessions are probed",
    rationale: "Dead and abandoned sessions are closed instead of lingering.",
  },
  {
    keyword: "ClientAliveCountMax",
    default: "3",
    ok: (v) => num(v) <= 3,
    set: "3",
    want: "3 or fewer",
    severity: "low",
    ref: "CIS Debian 12 5.1.7",
    title: "Unanswered probes end the session",
    rationale: "Bounds how long an abandoned session stays open.",
  },
  {
    keyword: "LogLevel",
    default: "INFO",
    ok: (v) => ["info", "verbose"].includes(lower(v)),
    set: "VERBOSE",
    want: "INFO or VERBOSE",
    severity: "low",
    ref: "CIS Debian 12 5.1.14",
    title: "SSH logs logins (and key fingerprints)",
    rationale: "Incident response needs to know who logged in with which key.",
  },
  {
    keyword: "UsePAM",
    default: "no",
    ok: (v) => lower(v) === "yes",
    set: "yes",
    want: "yes",
    severity: "medium",
    ref: "CIS Debian 12 5.1.21",
    title: "SSH uses PAM",
    rationale: "Account locking, lockout and session limits are enforced through PAM.",
  },
  {
    keyword: "Banner",
    default: "none",
    ok: (v) => lower(v) !== "none",
    set: "/etc/issue.net",
    want: "a banner file",
    severity: "info",
    ref: "CIS Debian 12 5.1.5",
    title: "SSH shows a login banner",
    rationale: "Some jurisdictions need a warning before access for prosecution.",
  },
  {
    keyword: "Ciphers",
    default:
      "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    ok: (v) => !WEAK_CIPHERS.test(lower(v)),
    want: "no CBC, 3DES or RC4 ciphers",
    severity: "medium",
    ref: "CIS Debian 12 5.1.6",
    title: "SSH offers no weak ciphers",
    rationale: "CBC and RC4 ciphers have practical attacks.",
  },
  {
    keyword: "MACs",
    default:
      "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1",
    ok: (v) => !WEAK_MACS.test(lower(v)),
    set: STRONG_MACS,
    want: "no MD5, RIPEMD, 96-bit or 64-bit MACs",
    severity: "low",
    ref: "CIS Debian 12 5.1.13",
    title: "SSH offers no weak MACs",
    rationale: "Short or broken MACs weaken integrity protection.",
  },
  {
    keyword: "KexAlgorithms",
    default:
      "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256",
    ok: (v) => !WEAK_KEX.test(lower(v)),
    want: "no SHA-1 key exchange",
    severity: "medium",
    ref: "CIS Debian 12 5.1.12",
    title: "SSH offers no SHA-1 key exchange",
    rationale: "SHA-1 and 1024-bit groups are within reach of well-funded attackers.",
  },
  {
    keyword: "PermitUserEnvironment",
    default: "no",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "medium",
    ref: "CIS Debian 12 5.1.11",
    title: "Users cannot set the server's environment",
    rationale: "LD_PRELOAD from ~/.ssh/environment bypasses restrictions.",
  },
  {
    keyword: "GSSAPIAuthentication",
    default: "no",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "low",
    ref: "CIS Debian 12 5.1.8",
    title: "GSSAPI authentication is off",
    rationale: "Unused authentication methods are unused attack surface.",
  },
  {
    keyword: "KerberosAuthentication",
    default: "no",
    ok: (v) => lower(v) === "no",
    set: "no",
    want: "no",
    severity: "low",
    ref: "Lynis SSH-7408",
    title: "Kerberos password authentication is off",
    rationale: "Unused authentication methods are unused attack surface.",
  },
  {
    keyword: "StrictModes",
    default: "yes",
    ok: (v) => lower(v) === "yes",
    set: "yes",
    want: "yes",
    severity: "medium",
    ref: "Lynis SSH-7408",
    title: "sshd checks permissions of users' key files",
    rationale: "A world-writable authorized_keys lets anyone add a key.",
  },
  {
    keyword: "PrintLastLog",
    default: "yes",
    ok: (v) => lower(v) === "yes",
    set: "yes",
    want: "yes",
    severity: "info",
    ref: "Lynis SSH-7408",
    title: "Users see their last login",
    rationale: "A login the user did not make is noticed.",
  },
  {
    keyword: "Compression",
    default: "yes",
    ok: (v) => ["no", "delayed"].includes(lower(v)),
    set: "no",
    want: "no",
    severity: "info",
    ref: "Lynis SSH-7408",
    title: "SSH compression is off",
    rationale: "Compression before authentication has had vulnerabilities; it gains little on fast links.",
  },
];

export function sshdChanges(f: Facts, keyword: string, value: string): Change[] {
  const cfg = f.sshd();
  const line = { key: keyword, line: `${keyword} ${value}` };
  const reload: Change = { kind: "reload", unit: "ssh.service", validate: ["sshd", "-t"] };
  if (cfg?.includesDropIns)
    return [
      {
        kind: "lines",
        path: SSHD_DROP_IN,
        syntax: "space",
        lines: [line],
        header: "# Set by berth harden; sorts first, so these values win.",
        mode: 0o600,
      },
      reload,
    ];
  return [{ kind: "lines", path: "/etc/ssh/sshd_config", syntax: "space", lines: [line] }, reload];
}

function sshRule(s: SshSpec): Rule {
  return {
    id: `ssh-${s.keyword.replace(/[A-Z]/g, (c, i: number) => (i ? "-" : "") + c.toLowerCase())}`,
    title: s.title,
    category: "ssh",
    severity: s.severity,
    rationale: s.rationale,
    refs: [s.ref],
    targets: HOST_TARGETS,
    check: (f) => {
      const cfg = f.sshd();
      if (!cfg) return na("no SSH server configuration");
      const v = cfg.settings.get(s.keyword.toLowerCase());
      const value = v ?? s.default;
      return s.ok(value)
        ? pass(`${s.keyword} ${value}${v === undefined ? " (default)" : ""}`)
        : fail(`${s.keyword} ${value}${v === undefined ? " (default)" : ""}; want ${s.want}`);
    },
    advice: `Set \`${s.keyword} ${s.set ?? s.want}\` in /etc/ssh/sshd_config.d/ and reload ssh.`,
    fix: s.set ? (f) => sshdChanges(f, s.keyword, s.set!) : undefined,
    guard: s.guard,
  };
}

export const sshRules: Rule[] = [
  ...SPECS.map(sshRule),
  {
    id: "ssh-access-limited",
    title: "SSH access is limited to named users or groups",
    category: "ssh",
    severity: "low",
    rationale: "A new or forgotten account cannot log in remotely unless it is on the list.",
    refs: ["CIS Debian 12 5.1.4"],
    targets: HOST_TARGETS,
    check: (f) => {
      const cfg = f.sshd();
      if (!cfg) return na("no SSH server configuration");
      const set = ["allowusers", "allowgroups", "denyusers", "denygroups"].filter((k) => cfg.settings.has(k));
      return set.length
        ? pass(`limited by ${set.join(", ")}`)
        : fail("no AllowUsers, AllowGroups, DenyUsers or DenyGroups");
    },
    advice:
      "Add `AllowGroups sudo` (or the group of your administrators) to a drop-in in /etc/ssh/sshd_config.d/.",
  },
  {
    id: "ssh-drop-ins-included",
    title: "sshd_config includes its drop-in directory before its own settings",
    category: "ssh",
    severity: "info",
    rationale: "Drop-ins can only take effect when included first (sshd keeps the first value it reads).",
    refs: ["Debian openssh-server default configuration"],
    targets: HOST_TARGETS,
    check: (f) => {
      const cfg = f.sshd();
      if (!cfg) return na("no SSH server configuration");
      return cfg.includesDropIns
        ? pass("Include /etc/ssh/sshd_config.d/*.conf comes first")
        : fail("drop-ins are not included first; settings must go into sshd_config itself");
    },
    advice: "Put `Include /etc/ssh/sshd_config.d/*.conf` at the top of /etc/ssh/sshd_config.",
  },
];
