// Kernel parameters: each checked where it runs (live host) and where it is persisted (sysctl.d), and
// fixed by one Berth-managed sysctl.d file (plus the running value on a live host).

import type { Facts } from "../facts.ts";
import { type Change, fail, HOST_TARGETS, na, pass, type Rule, type RuleSeverity } from "../rule.ts";

/** Sorts after Debian's and most vendors' files, so its values are the ones applied. */
export const SYSCTL_FILE = "/etc/sysctl.d/zz-berth-harden.conf";

interface SysctlSpec {
  key: string;
  /** Acceptable values; the first is what the fix sets. */
  good: string[];
  /** The kernel's (or Debian's) value when nothing sets it, used for offline roots. */
  kernelDefault?: string;
  severity: RuleSeverity;
  title: string;
  rationale: string;
  refs: string[];
  /** Set only in sysctl.d: the running value cannot be put back (e.g. kexec_load_disabled). */
  persistOnly?: boolean;
  containerNote?: string;
  /** No automated fix (the change can cut the host off). */
  noFix?: boolean;
}

const redirects = (family: "ipv4" | "ipv6", scope: "all" | "default", n: string): SysctlSpec => ({
  key: `net.${family}.conf.${scope}.accept_redirects`,
  good: ["0"],
  kernelDefault: "1",
  severity: "medium",
  title: `ICMP redirects are not accepted (${family}, ${scope})`,
  rationale: "Forged ICMP redirects can reroute the host's traffic through an attacker.",
  refs: [`CIS Debian 12 ${n}`],
});

const SPECS: SysctlSpec[] = [
  redirects("ipv4", "all", "3.3.2"),
  redirects("ipv4", "default", "3.3.2"),
  redirects("ipv6", "all", "3.3.2"),
  redirects("ipv6", "default", "3.3.2"),
  ...(["all", "default"] as const).flatMap((scope): SysctlSpec[] => [
    {
      key: `net.ipv4.conf.${scope}.secure_redirects`,
      good: ["0"],
      kernelDefault: "1",
      severity: "medium",
      title: `Secure ICMP redirects are not accepted (${scope})`,
      rationale: "Redirects from listed gateways are still redirects an attacker on the path can forge.",
      refs: ["CIS Debian 12 3.3.3"],
    },
    {
      key: `net.ipv4.conf.${scope}.send_redirects`,
      good: ["0"],
      kernelDefault: "1",
      severity: "medium",
      title: `The host does not send ICMP redirects (${scope})`,
      rationale: "Only routers send redirects; a container host forwards but is not the LAN's router.",
      refs: ["CIS Debian 12 3.3.4"],
    },
    {
      key: `net.ipv4.conf.${scope}.accept_source_route`,
      good: ["0"],
      kernelDefault: "0",
      severity: "medium",
      title: `Source-routed IPv4 packets are refused (${scope})`,
      rationale: "Source routing lets a sender choose the path and bypass filtering.",
      refs: ["CIS Debian 12 3.3.5"],
    },
    {
      key: `net.ipv6.conf.${scope}.accept_source_route`,
      good: ["0"],
      kernelDefault: "0",
      severity: "medium",
      title: `Source-routed IPv6 packets are refused (${scope})`,
      rationale: "Source routing lets a sender choose the path and bypass filtering.",
      refs: ["CIS Debian 12 3.3.5"],
    },
    {
      key: `net.ipv4.conf.${scope}.log_martians`,
      good: ["1"],
      kernelDefault: "0",
      severity: "low",
      title: `Packets with impossible addresses are logged (${scope})`,
      rationale: "Martian packets are a sign of spoofing or misrouting worth seeing in the log.",
      refs: ["CIS Debian 12 3.3.9"],
    },
    {
      key: `net.ipv4.conf.${scope}.rp_filter`,
      good: ["1", "2"],
      kernelDefault: "0",
      severity: "medium",
      title: `Reverse-path filtering is on (${scope})`,
      rationale: "Drops packets whose source address could not be routed back, a cheap anti-spoofing filter.",
      refs: ["CIS Debian 12 3.3.7"],
      containerNote:
        "Loose mode (2) is accepted as well as strict (1): overlay networks and multi-homed nodes route asymmetrically.",
    },
  ]),
  {
    key: "net.ipv4.icmp_echo_ignore_broadcasts",
    good: ["1"],
    kernelDefault: "1",
    severity: "low",
    title: "Broadcast ICMP echo requests are ignored",
    rationale: "Answering broadcast pings makes the host a smurf-attack amplifier.",
    refs: ["CIS Debian 12 3.3.6"],
  },
  {
    key: "net.ipv4.icmp_ignore_bogus_error_responses",
    good: ["1"],
    kernelDefault: "1",
    severity: "low",
    title: "Bogus ICMP error responses are ignored",
    rationale: "Stops log flooding by malformed ICMP errors.",
    refs: ["CIS Debian 12 3.3.6"],
  },
  {
    key: "net.ipv4.tcp_syncookies",
    good: ["1"],
    kernelDefault: "1",
    severity: "medium",
    title: "TCP SYN cookies are on",
    rationale: "Keeps the host answering during a SYN flood.",
    refs: ["CIS Debian 12 3.3.8"],
  },
  {
    key: "net.ipv4.tcp_rfc1337",
    good: ["1"],
    kernelDefault: "0",
    severity: "low",
    title: "TIME-WAIT assassination protection (RFC 1337) is on",
    rationale: "Stops stray RSTs from killing connections in TIME-WAIT.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "net.ipv6.conf.all.accept_ra",
    good: ["0"],
    kernelDefault: "1",
    severity: "low",
    title: "IPv6 router advertisements are not accepted",
    rationale: "A rogue router advertisement can redirect the host's IPv6 traffic.",
    refs: ["CIS Debian 12 3.3.10"],
    noFix: true,
    containerNote:
      "Not fixed automatically: a node that gets its IPv6 address by SLAAC would lose it. Set it where addresses are static.",
  },
  {
    key: "kernel.randomize_va_space",
    good: ["2"],
    kernelDefault: "2",
    severity: "high",
    title: "Address space layout randomization is full",
    rationale: "ASLR makes memory-corruption exploits guess addresses.",
    refs: ["CIS Debian 12 1.5.3"],
  },
  {
    key: "kernel.kptr_restrict",
    good: ["1", "2"],
    kernelDefault: "0",
    severity: "medium",
    title: "Kernel pointers are hidden from unprivileged users",
    rationale: "Leaked kernel addresses defeat KASLR.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "kernel.dmesg_restrict",
    good: ["1"],
    kernelDefault: "1",
    severity: "low",
    title: "The kernel log is readable by root only",
    rationale: "The kernel log leaks addresses and hardware details useful to an attacker.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "kernel.yama.ptrace_scope",
    good: ["1", "2"],
    kernelDefault: "0",
    severity: "medium",
    title: "ptrace is limited to descendants (Yama)",
    rationale: "Any process of a user can otherwise read the memory of every other process of that user.",
    refs: ["CIS Debian 12 1.5.2"],
    containerNote:
      "1 keeps root's ptrace (debuggers, `berth patch lib`) working; 3 would forbid it for good.",
  },
  {
    key: "kernel.unprivileged_bpf_disabled",
    good: ["1", "2"],
    kernelDefault: "2",
    severity: "medium",
    title: "Unprivileged eBPF is disabled",
    rationale: "Unprivileged BPF has been a steady source of kernel privilege escalations.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "net.core.bpf_jit_harden",
    good: ["2"],
    kernelDefault: "0",
    severity: "low",
    title: "The BPF JIT is hardened",
    rationale: "Constant blinding in JIT output blunts JIT spraying.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "kernel.kexec_load_disabled",
    good: ["1"],
    kernelDefault: "0",
    severity: "low",
    title: "Loading a new kernel with kexec is disabled",
    rationale: "kexec replaces the running kernel, bypassing secure boot and module signing.",
    refs: ["KSPP recommended settings"],
    persistOnly: true,
  },
  {
    key: "kernel.sysrq",
    good: ["0"],
    kernelDefault: "438",
    severity: "low",
    title: "The magic SysRq key is disabled",
    rationale: "SysRq gives whoever reaches the console a way to kill processes or reboot.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "fs.suid_dumpable",
    good: ["0"],
    kernelDefault: "0",
    severity: "medium",
    title: "Set-user-ID programs do not dump core",
    rationale: "Core dumps of privileged programs can hold secrets.",
    refs: ["CIS Debian 12 1.5.1"],
  },
  {
    key: "fs.protected_hardlinks",
    good: ["1"],
    kernelDefault: "1",
    severity: "medium",
    title: "Hard links to others' files are restricted",
    rationale: "Blocks a class of time-of-check/time-of-use attacks in world-writable directories.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "fs.protected_symlinks",
    good: ["1"],
    kernelDefault: "1",
    severity: "medium",
    title: "Following others' symlinks in sticky directories is restricted",
    rationale: "Blocks symlink races in /tmp.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "fs.protected_fifos",
    good: ["1", "2"],
    kernelDefault: "1",
    severity: "low",
    title: "Writing to others' FIFOs in sticky directories is restricted",
    rationale: "Blocks data spoofing through FIFOs planted in /tmp.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "fs.protected_regular",
    good: ["1", "2"],
    kernelDefault: "2",
    severity: "low",
    title: "Writing to others' files in sticky directories is restricted",
    rationale: "Blocks data spoofing through files planted in /tmp.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "kernel.perf_event_paranoid",
    good: ["2", "3"],
    kernelDefault: "3",
    severity: "low",
    title: "Performance events are restricted",
    rationale: "perf events expose kernel addresses and side channels.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "dev.tty.ldisc_autoload",
    good: ["0"],
    kernelDefault: "1",
    severity: "low",
    title: "TTY line disciplines do not autoload",
    rationale: "Unprivileged users could load rarely used, buggy line-discipline modules.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "vm.unprivileged_userfaultfd",
    good: ["0"],
    kernelDefault: "0",
    severity: "low",
    title: "Unprivileged userfaultfd is disabled",
    rationale: "userfaultfd makes kernel race conditions easy to win.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "vm.mmap_min_addr",
    good: ["65536"],
    kernelDefault: "65536",
    severity: "medium",
    title: "Low memory cannot be mapped",
    rationale: "Mapping page zero turns kernel NULL dereferences into exploits.",
    refs: ["KSPP recommended settings"],
  },
  {
    key: "kernel.core_uses_pid",
    good: ["1"],
    kernelDefault: "1",
    severity: "info",
    title: "Core files carry the process ID",
    rationale: "Keeps core dumps of different processes apart.",
    refs: ["Lynis KRNL-6000"],
  },
];

/** Where forwarding is part of the job (Docker, containerd, Kubernetes), it must stay on. */
export function runsContainers(f: Facts): boolean {
  return ["docker.io", "docker-ce", "containerd", "containerd.io", "kubelet", "podman"].some((p) =>
    f.hasPackage(p),
  );
}

function values(f: Facts, key: string, kernelDefault?: string) {
  const persisted = f.sysctlPersisted().get(key);
  return { persisted, runtime: f.sysctlRuntime(key), effectivePersisted: persisted ?? kernelDefault };
}

function sysctlRule(s: SysctlSpec): Rule {
  return {
    id: `sysctl-${s.key.replaceAll(".", "-").replaceAll("_", "-")}`,
    title: s.title,
    category: "kernel parameters",
    severity: s.severity,
    rationale: s.rationale,
    refs: s.refs,
    targets: HOST_TARGETS,
    containerNote: s.containerNote,
    check: (f) => {
      const v = values(f, s.key, s.kernelDefault);
      if (f.live && v.runtime === undefined) return na(`${s.key} does not exist on this kernel`);
      const bad: string[] = [];
      if (f.live && !s.good.includes(v.runtime!)) bad.push(`running ${v.runtime}`);
      if (v.effectivePersisted === undefined) {
        if (!f.live) return na(`${s.key} is not set and its default is unknown`);
      } else if (
        !s.good.includes(v.effectivePersisted) &&
        !(f.live && v.persisted === undefined && s.good.includes(v.runtime!))
      )
        bad.push(
          v.persisted === undefined
            ? `not persisted (default ${v.effectivePersisted})`
            : `persisted ${v.persisted}`,
        );
      return bad.length
        ? fail(`${s.key}: ${bad.join(", ")}; want ${s.good.join(" or ")}`)
        : pass(`${s.key} = ${v.runtime ?? v.effectivePersisted}`);
    },
    advice: `Set ${s.key} = ${s.good[0]} in a file under /etc/sysctl.d/ and run \`sysctl --system\`.`,
    fix: s.noFix ? undefined : (f) => sysctlChanges(f, s.key, s.good[0]!, s.persistOnly),
  };
}

export function sysctlChanges(f: Facts, key: string, value: string, persistOnly = false): Change[] {
  const line = { key, line: `${key} = ${value}` };
  const out: Change[] = [
    { kind: "lines", path: SYSCTL_FILE, syntax: "sysctl", lines: [line], header: "# Set by berth harden." },
    // A later /etc/sysctl.conf assignment would win over the managed file at boot.
    { kind: "replace-lines", path: "/etc/sysctl.conf", syntax: "sysctl", lines: [line] },
  ];
  if (f.live && !persistOnly) out.push({ kind: "sysctl", key, value });
  return out;
}

function forwardingRule(key: string, n: string): Rule {
  return {
    id: `sysctl-${key.replaceAll(".", "-").replaceAll("_", "-")}`,
    title: `Packet forwarding (${key}) matches the host's role`,
    category: "kernel parameters",
    severity: "medium",
    rationale: "A host that is not a router or container host should not forward packets.",
    refs: [`CIS Debian 12 ${n}`],
    targets: HOST_TARGETS,
    containerNote:
      "CIS wants forwarding off. Container networking (bridge, overlay, Kubernetes) needs it on, so on a host with a container runtime the rule expects it on and never turns it off.",
    check: (f) => {
      const v = values(f, key, "0");
      const value = f.live ? v.runtime : v.effectivePersisted;
      if (value === undefined) return na(`${key} does not exist here`);
      if (runsContainers(f))
        return pass(`${key} = ${value} (a container runtime is installed; forwarding is left alone)`);
      return value === "0"
        ? pass(`${key} = 0`)
        : fail(`${key} = ${value} on a host without a container runtime`);
    },
    advice: "Without containers or routing duties, set it to 0 in /etc/sysctl.d/.",
  };
}

export const kernelParamRules: Rule[] = [
  ...SPECS.map(sysctlRule),
  forwardingRule("net.ipv4.ip_forward", "3.3.1"),
  forwardingRule("net.ipv6.conf.all.forwarding", "3.3.1"),
  {
    id: "sysctl-net-bridge-bridge-nf-call-iptables",
    title: "Bridged container traffic passes through iptables",
    category: "kernel parameters",
    severity: "medium",
    rationale:
      "Without it, traffic between containers on one bridge skips the host firewall and Kubernetes policies.",
    refs: ["Kubernetes container runtime prerequisites"],
    targets: ["host"],
    check: (f) => {
      const v = f.sysctlRuntime("net.bridge.bridge-nf-call-iptables");
      if (v === undefined) return na("br_netfilter is not loaded");
      return v === "1" ? pass("bridge-nf-call-iptables = 1") : fail(`bridge-nf-call-iptables = ${v}`);
    },
    advice: "Load br_netfilter and set net.bridge.bridge-nf-call-iptables = 1.",
  },
];
