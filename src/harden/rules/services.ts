// Services a container host should not run, packages it should not carry, time sync, AppArmor, and
// the small system settings (core dumps, Ctrl-Alt-Del, the debug shell).

import { readFileSync } from "node:fs";
import { type Change, fail, HOST_TARGETS, na, pass, type Rule, type RuleSeverity } from "../rule.ts";

const SERVICES: [unit: string, what: string, severity: RuleSeverity, ref: string][] = [
  ["avahi-daemon.service", "mDNS/DNS-SD (Avahi)", "medium", "CIS Debian 12 2.2.2"],
  ["cups.service", "the CUPS print server", "medium", "CIS Debian 12 2.2.3"],
  ["cups-browsed.service", "CUPS printer discovery", "medium", "CIS Debian 12 2.2.3"],
  ["isc-dhcp-server.service", "a DHCP server", "medium", "CIS Debian 12 2.2.4"],
  ["slapd.service", "an LDAP server", "medium", "CIS Debian 12 2.2.5"],
  ["nfs-server.service", "an NFS server", "medium", "CIS Debian 12 2.2.6"],
  ["rpcbind.service", "rpcbind", "medium", "CIS Debian 12 2.2.6"],
  ["rpcbind.socket", "rpcbind's socket", "medium", "CIS Debian 12 2.2.6"],
  ["named.service", "a DNS server (BIND)", "medium", "CIS Debian 12 2.2.7"],
  ["vsftpd.service", "an FTP server", "high", "CIS Debian 12 2.2.8"],
  ["dovecot.service", "an IMAP/POP3 server", "medium", "CIS Debian 12 2.2.10"],
  ["smbd.service", "a Samba file server", "medium", "CIS Debian 12 2.2.11"],
  ["nmbd.service", "Samba's NetBIOS name server", "medium", "CIS Debian 12 2.2.11"],
  ["squid.service", "an HTTP proxy", "medium", "CIS Debian 12 2.2.12"],
  ["snmpd.service", "an SNMP agent", "medium", "CIS Debian 12 2.2.13"],
  ["rsync.service", "an rsync daemon", "medium", "CIS Debian 12 2.2.15"],
  ["ypserv.service", "a NIS server", "high", "CIS Debian 12 2.2.16"],
  ["tftpd-hpa.service", "a TFTP server", "high", "CIS Debian 12 2.2.14"],
  ["xinetd.service", "xinetd", "medium", "CIS Debian 11 2.1.1"],
  ["inetd.service", "inetd", "medium", "CIS Debian 11 2.1.1"],
  ["telnet.socket", "a telnet server", "critical", "CIS Debian 11 2.2.18"],
  ["bluetooth.service", "Bluetooth", "low", "CIS Debian 12 3.1.3"],
  ["ModemManager.service", "ModemManager", "low", "Lynis"],
  ["autofs.service", "the automounter", "low", "CIS Debian 12 2.2.1"],
  ["display-manager.service", "a graphical login", "low", "CIS Debian 12 2.2.20"],
];

/** Masks a unit: a /dev/null link in /etc/systemd/system (stopped too on a live host). */
export const maskChange = (unit: string): Change[] => [{ kind: "mask", unit }];

function serviceRule([unit, what, severity, ref]: (typeof SERVICES)[number]): Rule {
  return {
    id: `service-${unit.replace(/\.(service|socket)$/, "").toLowerCase()}${unit.endsWith(".socket") ? "-socket" : ""}-off`,
    title: `${what} does not run`,
    category: "services",
    severity,
    rationale: `A container host runs its workloads in containers; ${what} on the host is exposure with no job.`,
    refs: [ref],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasUnit(unit)) return na(`${unit} is not installed or is masked`);
      const on: string[] = [];
      if (f.enabled(unit)) on.push("enabled");
      if (f.active(unit)) on.push("running");
      return on.length ? fail(`${unit} is ${on.join(" and ")}`) : pass(`${unit} is installed but off`);
    },
    advice: `systemctl disable --now ${unit} (or purge its package)`,
    fix: () => maskChange(unit),
  };
}

const PACKAGES: [pkg: string, what: string, severity: RuleSeverity, ref: string][] = [
  ["telnet", "the telnet client", "low", "CIS Debian 12 2.3.4"],
  ["inetutils-telnet", "the telnet client", "low", "CIS Debian 12 2.3.4"],
  ["rsh-client", "the rsh client", "medium", "CIS Debian 12 2.3.3"],
  ["nis", "NIS", "medium", "CIS Debian 12 2.3.1"],
  ["talk", "talk", "low", "CIS Debian 12 2.3.2"],
  ["ldap-utils", "LDAP client tools", "info", "CIS Debian 12 2.3.5"],
  ["ftp", "the FTP client", "low", "CIS Debian 12 2.3.6"],
  ["tnftp", "the FTP client", "low", "CIS Debian 12 2.3.6"],
  ["prelink", "prelink", "medium", "CIS Debian 12 1.5.4"],
  ["xserver-xorg-core", "an X server", "low", "CIS Debian 12 2.2.20"],
  ["apport", "apport crash reporting", "low", "CIS Debian 12 1.5.5"],
];

const packageRule = ([pkg, what, severity, ref]: (typeof PACKAGES)[number]): Rule => ({
  id: `package-${pkg}-absent`,
  title: `${what} is not installed (${pkg})`,
  category: "packages",
  severity,
  rationale: `${what} speaks a clear-text or obsolete protocol, or weakens binaries; a container host has no use for it.`,
  refs: [ref],
  targets: ["host", "root", "image"],
  check: (f) => (f.hasPackage(pkg) ? fail(`${pkg} is installed`) : pass(`${pkg} is not installed`)),
  advice: `apt-get purge ${pkg}`,
});

const TIME_SERVICES = [
  "systemd-timesyncd.service",
  "chrony.service",
  "ntpsec.service",
  "ntp.service",
  "openntpd.service",
];
export const COREDUMP_LIMITS = "/etc/security/limits.d/berth-harden.conf";

export const serviceRules: Rule[] = [
  ...SERVICES.map(serviceRule),
  ...PACKAGES.map(packageRule),
  {
    id: "time-sync-enabled",
    title: "Time is synchronised",
    category: "time",
    severity: "medium",
    rationale: "TLS, tokens, logs and Kubernetes leases all depend on a correct clock.",
    refs: ["CIS Debian 12 2.3.1.1"],
    targets: HOST_TARGETS,
    check: (f) => {
      const on = TIME_SERVICES.filter((u) => f.enabled(u) || f.active(u));
      return on.length ? pass(on.join(", ")) : fail("no time synchronisation service is enabled");
    },
    advice: "systemctl enable --now systemd-timesyncd (or install chrony).",
  },
  {
    id: "time-sync-single",
    title: "Only one time service runs",
    category: "time",
    severity: "low",
    rationale: "Two time daemons fight over the clock.",
    refs: ["CIS Debian 12 2.3.1.1"],
    targets: HOST_TARGETS,
    check: (f) => {
      const on = TIME_SERVICES.filter((u) => f.enabled(u) || f.active(u));
      return on.length > 1 ? fail(`several: ${on.join(", ")}`, on) : pass(on[0] ?? "none");
    },
    advice: "Keep one of the listed services and disable the others.",
  },
  {
    id: "time-chrony-user",
    title: "chrony runs as _chrony",
    category: "time",
    severity: "low",
    rationale: "A network daemon should not keep root.",
    refs: ["CIS Debian 12 2.3.3.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("chrony")) return na("chrony is not installed");
      const d = f.read("/etc/default/chrony") ?? "";
      return /-u\s+root\b/.test(d) ? fail("chrony is told to run as root") : pass("chrony drops to _chrony");
    },
    advice: "Remove `-u root` from DAEMON_OPTS in /etc/default/chrony.",
  },
  {
    id: "apparmor-installed",
    title: "AppArmor is installed",
    category: "mandatory access control",
    severity: "medium",
    rationale: "AppArmor confines daemons and, through docker-default, every container.",
    refs: ["CIS Debian 12 1.3.1.1"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.hasPackage("apparmor") ? pass("apparmor is installed") : fail("apparmor is not installed"),
    advice: "apt-get install apparmor apparmor-utils",
  },
  {
    id: "apparmor-enabled-boot",
    title: "AppArmor is not disabled on the kernel command line",
    category: "mandatory access control",
    severity: "medium",
    rationale: "apparmor=0 or security=<other> switches confinement off for everything.",
    refs: ["CIS Debian 12 1.3.1.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      const cmd = f.kernelCmdline();
      if (!cmd) return na("no kernel command line to read");
      const bad = cmd.filter(
        (a) => a === "apparmor=0" || (a.startsWith("security=") && a !== "security=apparmor"),
      );
      return bad.length ? fail(bad.join(" ")) : pass("not disabled");
    },
    advice: "Remove apparmor=0 and security= from the kernel command line.",
  },
  {
    id: "apparmor-active",
    title: "AppArmor is active in the running kernel",
    category: "mandatory access control",
    severity: "medium",
    rationale: "Installed but inactive AppArmor confines nothing.",
    refs: ["CIS Debian 12 1.3.1.2"],
    targets: ["host"],
    check: () => {
      try {
        const v = readFileSync("/sys/module/apparmor/parameters/enabled", "utf8").trim();
        return v === "Y" ? pass("enabled") : fail(`enabled = ${v}`);
      } catch {
        return fail("the apparmor module is not present");
      }
    },
    advice: "Boot a kernel with AppArmor (Debian's are) and keep the apparmor service enabled.",
  },
  {
    id: "apparmor-service-enabled",
    title: "The AppArmor service loads profiles at boot",
    category: "mandatory access control",
    severity: "low",
    rationale: "Profiles not loaded at boot do not confine anything.",
    refs: ["CIS Debian 12 1.3.1.3"],
    targets: HOST_TARGETS,
    check: (f) =>
      !f.hasUnit("apparmor.service")
        ? na("apparmor.service is not installed")
        : f.enabled("apparmor.service")
          ? pass("enabled")
          : fail("apparmor.service is not enabled"),
    advice: "systemctl enable apparmor",
  },
  {
    id: "coredump-hard-limit",
    title: "Core dumps are limited to zero for all users",
    category: "system",
    severity: "low",
    rationale: "Core dumps hold memory contents, secrets included.",
    refs: ["CIS Debian 12 1.5.1"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.limitsConf().some((t) => /^\s*\*\s+hard\s+core\s+0\b/m.test(t))
        ? pass("* hard core 0")
        : fail("no `* hard core 0` in limits.conf"),
    advice: "Add `* hard core 0` to /etc/security/limits.d/.",
    fix: () => [
      {
        kind: "lines",
        path: COREDUMP_LIMITS,
        syntax: "limits",
        header: "# Set by berth harden.",
        lines: [{ key: "* hard core", line: "* hard core 0" }],
      },
    ],
  },
  {
    id: "coredump-systemd-storage",
    title: "systemd-coredump keeps no dumps",
    category: "system",
    severity: "low",
    rationale: "Stored core dumps hold memory contents, secrets included.",
    refs: ["CIS Debian 12 1.5.1"],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("systemd-coredump")) return na("systemd-coredump is not installed");
      const t = [
        f.read("/etc/systemd/coredump.conf") ?? "",
        ...f.dropIns("/etc/systemd/coredump.conf.d"),
      ].join("\n");
      return /^\s*Storage\s*=\s*none/m.test(t) ? pass("Storage=none") : fail("Storage is not none");
    },
    advice: "Set Storage=none in /etc/systemd/coredump.conf.d/.",
    fix: (f) =>
      f.hasPackage("systemd-coredump")
        ? [
            {
              kind: "lines",
              path: "/etc/systemd/coredump.conf.d/berth-harden.conf",
              syntax: "ini-equals",
              header: "# Set by berth harden.\n[Coredump]",
              lines: [
                { key: "Storage", line: "Storage=none" },
                { key: "ProcessSizeMax", line: "ProcessSizeMax=0" },
              ],
            },
          ]
        : [],
  },
  {
    id: "ctrl-alt-del-masked",
    title: "Ctrl-Alt-Del does not reboot the host",
    category: "system",
    severity: "low",
    rationale: "Anyone at the console (or a stray key on a KVM switch) could reboot a production node.",
    refs: ["DISA STIG V-238209"],
    targets: HOST_TARGETS,
    check: (f) => {
      const u = f.units().unit("ctrl-alt-del.target");
      return !u || u.masked ? pass("masked or absent") : fail("ctrl-alt-del.target is active");
    },
    advice: "systemctl mask ctrl-alt-del.target",
    fix: () => maskChange("ctrl-alt-del.target"),
  },
  {
    id: "debug-shell-off",
    title: "The early-boot debug shell is not enabled",
    category: "system",
    severity: "high",
    rationale: "debug-shell.service gives a root shell on tty9 without a password.",
    refs: ["DISA STIG"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.enabled("debug-shell.service") ? fail("debug-shell.service is enabled") : pass("not enabled"),
    advice: "systemctl disable --now debug-shell.service",
    fix: (f) => (f.enabled("debug-shell.service") ? maskChange("debug-shell.service") : []),
  },
  {
    id: "banner-no-os-details",
    title: "Login banners do not reveal the OS version",
    category: "system",
    severity: "info",
    rationale: "Version strings help an attacker choose exploits.",
    refs: ["CIS Debian 12 1.7.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      const bad = ["/etc/issue", "/etc/issue.net", "/etc/motd"].filter((p) =>
        /\\[mrsv]|Debian GNU/.test(f.read(p) ?? ""),
      );
      return bad.length ? fail(`OS details in ${bad.join(", ")}`, bad) : pass("no OS details");
    },
    advice: "Replace the banners' contents with a usage notice.",
  },
  {
    id: "cron-restricted",
    title: "cron is restricted to listed users (cron.allow)",
    category: "system",
    severity: "low",
    rationale: "Only administrators schedule jobs on a host whose work runs in containers.",
    refs: ["CIS Debian 12 2.4.1.9"],
    targets: HOST_TARGETS,
    check: (f) =>
      !f.hasPackage("cron")
        ? na("cron is not installed")
        : f.exists("/etc/cron.allow")
          ? pass("/etc/cron.allow exists")
          : fail("no /etc/cron.allow"),
    advice: "echo root > /etc/cron.allow && chmod 640 /etc/cron.allow",
  },
  {
    id: "journald-persistent",
    title: "The journal is kept on disk",
    category: "logging",
    severity: "medium",
    rationale: "A journal in RAM is gone after the reboot that follows an incident.",
    refs: ["CIS Debian 12 6.1.1.3"],
    targets: HOST_TARGETS,
    check: (f) => {
      const s = f.journald().get("Journal.Storage") ?? "auto";
      if (s === "persistent") return pass("Storage=persistent");
      if (s === "auto" && f.exists("/var/log/journal")) return pass("Storage=auto with /var/log/journal");
      return fail(`Storage=${s}${s === "auto" ? " without /var/log/journal" : ""}`);
    },
    advice: "Set Storage=persistent in /etc/systemd/journald.conf.d/.",
    fix: () => [
      {
        kind: "lines",
        path: "/etc/systemd/journald.conf.d/berth-harden.conf",
        syntax: "ini-equals",
        header: "# Set by berth harden.\n[Journal]",
        lines: [{ key: "Storage", line: "Storage=persistent" }],
      },
    ],
  },
  {
    id: "journald-compress",
    title: "Large journal entries are compressed",
    category: "logging",
    severity: "info",
    rationale: "Compression keeps more history in the same space.",
    refs: ["CIS Debian 12 6.1.1.2"],
    targets: HOST_TARGETS,
    check: (f) =>
      (f.journald().get("Journal.Compress") ?? "yes") === "yes" ? pass("Compress=yes") : fail("Compress=no"),
    advice: "Set Compress=yes in /etc/systemd/journald.conf.d/.",
    fix: () => [
      {
        kind: "lines",
        path: "/etc/systemd/journald.conf.d/berth-harden.conf",
        syntax: "ini-equals",
        header: "# Set by berth harden.\n[Journal]",
        lines: [{ key: "Compress", line: "Compress=yes" }],
      },
    ],
  },
  {
    id: "journald-size-limit",
    title: "The journal's disk use is bounded",
    category: "logging",
    severity: "low",
    rationale: "Unbounded logs fill the state partition and stop the node.",
    refs: ["CIS Debian 12 6.1.1.1"],
    targets: HOST_TARGETS,
    check: (f) =>
      f.journald().get("Journal.SystemMaxUse")
        ? pass(`SystemMaxUse=${f.journald().get("Journal.SystemMaxUse")}`)
        : pass("default limit (10% of the file system, at most 4G)"),
    advice: "Set SystemMaxUse= to suit the state partition.",
  },
  {
    id: "journald-running",
    title: "journald is running",
    category: "logging",
    severity: "medium",
    rationale: "Without it nothing is logged.",
    refs: ["CIS Debian 12 6.1.1.1"],
    targets: ["host"],
    check: (f) => {
      const a = f.active("systemd-journald.service");
      return a === undefined
        ? na("systemd does not answer")
        : a
          ? pass("active")
          : fail("systemd-journald is not running");
    },
    advice: "systemctl start systemd-journald",
  },
];
