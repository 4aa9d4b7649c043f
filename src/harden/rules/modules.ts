// Kernel modules a container host never needs: rare file systems and network protocols whose code is
// attack surface the moment anyone can make the kernel load it.

import { fail, HOST_TARGETS, pass, type Rule, type RuleSeverity } from "../rule.ts";

export const MODPROBE_FILE = "/etc/modprobe.d/berth-harden.conf";

const MODULES: [name: string, what: string, severity: RuleSeverity, ref: string][] = [
  ["cramfs", "cramfs file system", "low", "CIS Debian 12 1.1.1.1"],
  ["freevxfs", "freevxfs file system", "low", "CIS Debian 12 1.1.1.2"],
  ["hfs", "HFS file system", "low", "CIS Debian 12 1.1.1.3"],
  ["hfsplus", "HFS+ file system", "low", "CIS Debian 12 1.1.1.4"],
  ["jffs2", "JFFS2 file system", "low", "CIS Debian 12 1.1.1.5"],
  ["udf", "UDF file system", "low", "CIS Debian 12 1.1.1.6"],
  ["usb_storage", "USB mass storage", "medium", "CIS Debian 12 1.1.1.9"],
  ["dccp", "DCCP protocol", "medium", "CIS Debian 12 3.2.1"],
  ["tipc", "TIPC protocol", "medium", "CIS Debian 12 3.2.2"],
  ["rds", "RDS protocol", "medium", "CIS Debian 12 3.2.3"],
  ["sctp", "SCTP protocol", "low", "CIS Debian 12 3.2.4"],
  ["n_hdlc", "HDLC line discipline", "low", "KSPP"],
  ["can", "CAN bus protocol", "low", "KSPP"],
  ["atm", "ATM protocol", "low", "KSPP"],
  ["appletalk", "AppleTalk protocol", "low", "KSPP"],
  ["ax25", "AX.25 amateur radio protocol", "low", "KSPP"],
  ["netrom", "NET/ROM amateur radio protocol", "low", "KSPP"],
  ["rose", "ROSE amateur radio protocol", "low", "KSPP"],
  ["x25", "X.25 protocol", "low", "KSPP"],
  ["ieee802154", "IEEE 802.15.4 protocol", "low", "KSPP"],
  ["firewire_core", "FireWire (DMA from devices)", "low", "KSPP"],
  ["bluetooth", "Bluetooth stack", "low", "CIS Debian 12 3.1.3"],
];

export const moduleRules: Rule[] = [
  ...MODULES.map(
    ([name, what, severity, ref]): Rule => ({
      id: `module-${name.replaceAll("_", "-")}-disabled`,
      title: `The ${what} module cannot be loaded`,
      category: "kernel modules",
      severity,
      rationale: `Nothing on a container host uses ${what}; its code is reachable attack surface once loaded on demand.`,
      refs: [ref],
      targets: HOST_TARGETS,
      check: (f) => {
        const m = f.modprobe();
        const problems: string[] = [];
        if (!m.disabled.has(name)) problems.push("no `install ... /bin/false` in modprobe.d");
        if (!m.blacklisted.has(name)) problems.push("not blacklisted");
        if (f.modulesLoaded()?.has(name)) problems.push("loaded now");
        return problems.length ? fail(`${name}: ${problems.join(", ")}`) : pass(`${name} is disabled`);
      },
      advice: `Add \`install ${name} /bin/false\` and \`blacklist ${name}\` to a file in /etc/modprobe.d/.`,
      fix: () => [
        {
          kind: "lines",
          path: MODPROBE_FILE,
          syntax: "modprobe",
          header: "# Set by berth harden: modules a container host never loads.",
          lines: [
            { key: `install ${name}`, line: `install ${name} /bin/false` },
            { key: `blacklist ${name}`, line: `blacklist ${name}` },
          ],
        },
      ],
    }),
  ),
  {
    id: "module-overlay-available",
    title: "overlayfs and squashfs are not disabled",
    category: "kernel modules",
    severity: "high",
    rationale: "Docker and containerd store images on overlayfs; Berth OS boots from squashfs.",
    refs: ["CIS Debian 12 1.1.1.7 (deliberately inverted)"],
    containerNote:
      "CIS suggests disabling squashfs and overlayfs; on a container host that stops every container (and Berth's own root), so this rule checks they stay loadable.",
    targets: HOST_TARGETS,
    check: (f) => {
      const m = f.modprobe();
      const off = ["overlay", "squashfs"].filter((n) => m.disabled.has(n) || m.blacklisted.has(n));
      return off.length
        ? fail(`disabled in modprobe.d: ${off.join(", ")}`, off)
        : pass("overlay and squashfs are loadable");
    },
    advice: "Remove the blacklist or install lines for overlay and squashfs from /etc/modprobe.d/.",
  },
];
