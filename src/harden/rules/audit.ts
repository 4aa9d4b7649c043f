// auditd: installed, started early, and watching what matters on a container host — the container
// engine's binaries, state and configuration (CIS Docker 1.1.x) and the account and privilege files.

import type { Facts } from "../facts.ts";
import { fail, HOST_TARGETS, na, pass, type Rule, type RuleSeverity } from "../rule.ts";

export const AUDIT_RULES_FILE = "/etc/audit/rules.d/berth-harden.rules";

function auditRulesText(f: Facts): string {
  return [f.read("/etc/audit/audit.rules") ?? "", ...f.dropIns("/etc/audit/rules.d", ".rules")].join("\n");
}

const WATCHES: [path: string, key: string, severity: RuleSeverity, ref: string][] = [
  ["/usr/bin/dockerd", "docker", "low", "CIS Docker 1.1.3"],
  ["/run/containerd", "docker", "low", "CIS Docker 1.1.4"],
  ["/var/lib/docker", "docker", "low", "CIS Docker 1.1.5"],
  ["/etc/docker", "docker", "low", "CIS Docker 1.1.6"],
  ["/lib/systemd/system/docker.service", "docker", "low", "CIS Docker 1.1.7"],
  ["/lib/systemd/system/docker.socket", "docker", "low", "CIS Docker 1.1.9"],
  ["/etc/default/docker", "docker", "low", "CIS Docker 1.1.10"],
  ["/etc/docker/daemon.json", "docker", "low", "CIS Docker 1.1.11"],
  ["/etc/containerd/config.toml", "docker", "low", "CIS Docker 1.1.12"],
  ["/usr/bin/containerd", "docker", "low", "CIS Docker 1.1.14"],
  ["/usr/bin/containerd-shim-runc-v2", "docker", "low", "CIS Docker 1.1.16"],
  ["/usr/sbin/runc", "docker", "low", "CIS Docker 1.1.18"],
  ["/etc/passwd", "identity", "medium", "CIS Debian 12 6.2.3.8"],
  ["/etc/group", "identity", "medium", "CIS Debian 12 6.2.3.8"],
  ["/etc/shadow", "identity", "medium", "CIS Debian 12 6.2.3.8"],
  ["/etc/gshadow", "identity", "medium", "CIS Debian 12 6.2.3.8"],
  ["/etc/sudoers", "scope", "medium", "CIS Debian 12 6.2.3.1"],
  ["/etc/sudoers.d", "scope", "medium", "CIS Debian 12 6.2.3.1"],
  ["/etc/ssh/sshd_config", "sshd", "low", "Lynis ACCT-9630"],
];

function watchRule([path, key, severity, ref]: (typeof WATCHES)[number]): Rule {
  return {
    id: `audit-watch-${path.slice(1).replace(/[/.]+/g, "-")}`,
    title: `Changes to ${path} are audited`,
    category: "auditing",
    severity,
    rationale: `${path} decides who can do what on the host; changes to it should leave a record.`,
    refs: [ref],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("auditd")) return na("auditd is not installed");
      if (!f.exists(path)) return na(`${path} does not exist`);
      const re = new RegExp(`^\\s*-w\\s+${path.replace(/[.]/g, "\\.")}/?\\s`, "m");
      return re.test(auditRulesText(f)) ? pass(`-w ${path}`) : fail(`no audit watch on ${path}`);
    },
    advice: `Add \`-w ${path} -p wa -k ${key}\` to a file in /etc/audit/rules.d/ and run augenrules --load.`,
    fix: (f) =>
      f.hasPackage("auditd") && f.exists(path)
        ? [
            {
              kind: "lines",
              path: AUDIT_RULES_FILE,
              syntax: "space",
              header: "## Set by berth harden.",
              lines: [{ key: `-w ${path}`, line: `-w ${path} -p wa -k ${key}` }],
              mode: 0o640,
            },
          ]
        : [],
  };
}

export const auditRules: Rule[] = [
  {
    id: "audit-installed",
    title: "auditd is installed",
    category: "auditing",
    severity: "medium",
    rationale: "The kernel audit log records who changed what, and is the evidence after an incident.",
    refs: ["CIS Debian 12 6.2.1.1"],
    targets: HOST_TARGETS,
    check: (f) => (f.hasPackage("auditd") ? pass("auditd is installed") : fail("auditd is not installed")),
    advice: "apt-get install auditd audispd-plugins",
  },
  {
    id: "audit-enabled",
    title: "auditd starts at boot",
    category: "auditing",
    severity: "medium",
    rationale: "An installed but stopped auditd records nothing.",
    refs: ["CIS Debian 12 6.2.1.2"],
    targets: HOST_TARGETS,
    check: (f) =>
      !f.hasPackage("auditd")
        ? na("auditd is not installed")
        : f.enabled("auditd.service")
          ? pass("enabled")
          : fail("auditd.service is not enabled"),
    advice: "systemctl enable --now auditd",
  },
  {
    id: "audit-early-boot",
    title: "Processes started before auditd are audited (audit=1)",
    category: "auditing",
    severity: "low",
    rationale: "Without audit=1, processes started before auditd are never audited.",
    refs: ["CIS Debian 12 6.2.1.3"],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("auditd")) return na("auditd is not installed");
      const cmd = f.kernelCmdline();
      if (!cmd) return na("no kernel command line to read");
      return cmd.includes("audit=1") ? pass("audit=1") : fail("audit=1 is not on the kernel command line");
    },
    advice: "Add audit=1 to the kernel command line (GRUB_CMDLINE_LINUX, or the Berth OS profile's cmdline).",
  },
  {
    id: "audit-backlog",
    title: "The audit backlog is large enough for boot",
    category: "auditing",
    severity: "low",
    rationale: "A small backlog drops events during the boot storm.",
    refs: ["CIS Debian 12 6.2.1.4"],
    targets: HOST_TARGETS,
    check: (f) => {
      if (!f.hasPackage("auditd")) return na("auditd is not installed");
      const cmd = f.kernelCmdline();
      if (!cmd) return na("no kernel command line to read");
      const v = cmd.find((a) => a.startsWith("audit_backlog_limit="));
      return v && Number(v.split("=")[1]) >= 8192
        ? pass(v)
        : fail(`${v ?? "audit_backlog_limit unset"}; want 8192 or more`);
    },
    advice: "Add audit_backlog_limit=8192 to the kernel command line.",
  },
  {
    id: "audit-log-not-deleted",
    title: "Audit logs are kept, not rotated away",
    category: "auditing",
    severity: "low",
    rationale: "Rotating audit logs away loses the evidence.",
    refs: ["CIS Debian 12 6.2.2.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      const t = f.read("/etc/audit/auditd.conf");
      if (t === undefined) return na("no auditd.conf");
      const v = /^\s*max_log_file_action\s*=\s*(\S+)/m.exec(t)?.[1]?.toLowerCase() ?? "rotate";
      return v === "keep_logs" ? pass("max_log_file_action = keep_logs") : fail(`max_log_file_action = ${v}`);
    },
    advice: "Set max_log_file_action = keep_logs in /etc/audit/auditd.conf (and watch the disk).",
  },
  ...WATCHES.map(watchRule),
];
