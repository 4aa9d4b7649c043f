// The kernel itself: known vulnerabilities of the installed or running kernel (through Berth's
// scanner and advisory database), build-time hardening in its config, and run-time lockdown.

import { fail, HOST_TARGETS, na, pass, type Rule, type RuleSeverity } from "../rule.ts";

const CONFIG: [option: string, want: string[], title: string, severity: RuleSeverity, rationale: string][] = [
  [
    "STACKPROTECTOR_STRONG",
    ["y"],
    "Stack protector (strong)",
    "medium",
    "Stack canaries stop most stack buffer overflows in kernel code.",
  ],
  [
    "STRICT_KERNEL_RWX",
    ["y"],
    "Kernel text and rodata are not writable",
    "high",
    "Writable kernel code makes every write primitive an instant exploit.",
  ],
  [
    "RANDOMIZE_BASE",
    ["y"],
    "Kernel address space layout randomization",
    "medium",
    "KASLR makes kernel exploits guess addresses.",
  ],
  [
    "HARDENED_USERCOPY",
    ["y"],
    "Hardened copies between user and kernel memory",
    "medium",
    "Bounds checks on copy_to/from_user stop heap over-reads and overflows.",
  ],
  [
    "FORTIFY_SOURCE",
    ["y"],
    "Fortified string functions",
    "low",
    "Compile-time bounds on memcpy and friends catch overflows.",
  ],
  [
    "SECCOMP_FILTER",
    ["y"],
    "seccomp filters",
    "high",
    "Container runtimes rely on seccomp to limit syscalls.",
  ],
  ["SECURITY_YAMA", ["y"], "Yama ptrace restrictions", "low", "Needed for kernel.yama.ptrace_scope."],
  ["SECURITY_APPARMOR", ["y"], "AppArmor", "medium", "Docker confines containers with AppArmor profiles."],
  [
    "INIT_ON_ALLOC_DEFAULT_ON",
    ["y"],
    "Memory zeroed on allocation",
    "low",
    "Stops leaks of stale heap contents.",
  ],
  [
    "SLAB_FREELIST_HARDENED",
    ["y"],
    "Hardened slab freelists",
    "low",
    "Makes heap corruption harder to exploit.",
  ],
  [
    "BUG_ON_DATA_CORRUPTION",
    ["y"],
    "Data-structure corruption stops the kernel",
    "low",
    "Continuing after corruption is how exploits succeed.",
  ],
  [
    "SECURITY_LOCKDOWN_LSM",
    ["y"],
    "Lockdown support",
    "low",
    "Lockdown keeps root from modifying the running kernel.",
  ],
  [
    "MODULE_SIG",
    ["y"],
    "Module signatures",
    "medium",
    "Signed modules keep unapproved code out of the kernel.",
  ],
  ["DEVMEM", ["n"], "No /dev/mem", "low", "Raw physical memory access is rarely needed and often abused."],
  [
    "LEGACY_VSYSCALL_NONE",
    ["y"],
    "No legacy vsyscall page",
    "low",
    "The fixed-address vsyscall page is a ready-made ROP gadget source.",
  ],
];

function configRule([option, want, title, severity, rationale]: (typeof CONFIG)[number]): Rule {
  return {
    id: `kernel-config-${option.toLowerCase().replaceAll("_", "-")}`,
    title: `Kernel built with: ${title}`,
    category: "kernel",
    severity,
    rationale,
    refs: ["KSPP recommended kernel settings"],
    targets: HOST_TARGETS,
    check: (f) => {
      const cfg = f.kernelConfig();
      if (!cfg) return na("no kernel config found");
      const v = cfg.get(option) ?? "n";
      return want.includes(v) ? pass(`CONFIG_${option}=${v}`) : fail(`CONFIG_${option}=${v}`);
    },
    advice: "Use a Debian kernel package, which builds these in, or rebuild with the option.",
  };
}

export const kernelRules: Rule[] = [
  {
    id: "kernel-vulnerabilities",
    title: "The kernel has no known high or critical vulnerabilities",
    category: "kernel",
    severity: "high",
    rationale: "Containers share the host's kernel; a kernel hole is a container escape.",
    refs: ["berth scan kernel"],
    targets: HOST_TARGETS,
    check: (f) => {
      const k = f.kernelVulns;
      if (!k) return na("no advisory database (run `berth db update`)");
      if (!k.kernels.length) return na("no kernel found");
      const serious = k.findings.filter((x) => x.severity === "critical" || x.severity === "high");
      return serious.length
        ? fail(
            `${serious.length} high or critical vulnerabilities in ${k.kernels.join(", ")} (${k.findings.length} in all)`,
            serious.slice(0, 50).map((x) => `${x.id} ${x.severity}${x.fixed ? ` fixed in ${x.fixed}` : ""}`),
          )
        : pass(`${k.findings.length} known, none high or critical, in ${k.kernels.join(", ")}`);
    },
    advice: "Upgrade the kernel package and reboot, or load a livepatch (`berth patch kernel`).",
  },
  {
    id: "kernel-mitigations-on",
    title: "CPU vulnerability mitigations are not switched off",
    category: "kernel",
    severity: "high",
    rationale: "mitigations=off reopens Spectre, Meltdown and their successors between containers.",
    refs: ["Linux admin-guide hw-vuln"],
    targets: HOST_TARGETS,
    check: (f) => {
      const cmd = f.kernelCmdline();
      if (!cmd) return na("no kernel command line to read");
      const bad = cmd.filter(
        (a) => a === "mitigations=off" || a === "nospectre_v2" || a === "nopti" || a === "nospectre_v1",
      );
      return bad.length ? fail(bad.join(" ")) : pass("mitigations are on");
    },
    advice: "Remove mitigations=off (and nopti, nospectre_*) from the kernel command line.",
  },
  {
    id: "kernel-lockdown",
    title: "Kernel lockdown is on",
    category: "kernel",
    severity: "low",
    rationale: "Lockdown stops root from changing the running kernel (raw memory, unsigned modules, kexec).",
    refs: ["kernel_lockdown(7)"],
    targets: ["host"],
    check: (f) => {
      const v = f.readSys("/sys/kernel/security/lockdown");
      if (v === undefined) return na("the kernel has no lockdown support");
      const current = /\[(\w+)\]/.exec(v)?.[1] ?? v;
      return current === "none" ? fail("lockdown: none") : pass(`lockdown: ${current}`);
    },
    advice:
      "Boot with lockdown=integrity (Secure Boot enables it on Debian). Kernel livepatch modules must then be signed.",
  },
  {
    id: "kernel-module-sig-enforce",
    title: "Only signed kernel modules load",
    category: "kernel",
    severity: "low",
    rationale: "An attacker with root cannot load a rootkit module that is not signed.",
    refs: ["KSPP recommended kernel settings"],
    targets: ["host"],
    check: (f) => {
      const v = f.readSys("/sys/module/module/parameters/sig_enforce");
      if (v === undefined) return na("module signing is not built in");
      return v === "Y" ? pass("sig_enforce = Y") : fail("sig_enforce = N");
    },
    advice: "Boot with module.sig_enforce=1 (and sign out-of-tree modules, livepatches included).",
  },
  ...CONFIG.map(configRule),
];
