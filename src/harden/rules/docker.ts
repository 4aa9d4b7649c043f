// The container engine: dockerd's configuration (CIS Docker section 2), every running container's
// settings (section 5) and images (section 4). Container and image fixes mean re-creating them, so
// those rules advise the exact flag instead of changing anything.

import type { ContainerInfo } from "../../common/docker.ts";
import type { Facts } from "../facts.ts";
import {
  type Change,
  type CheckResult,
  fail,
  HOST_TARGETS,
  na,
  pass,
  type Rule,
  type RuleSeverity,
} from "../rule.ts";

export const DAEMON_JSON = "/etc/docker/daemon.json";

function daemonRule(
  key: string,
  o: {
    title: string;
    severity: RuleSeverity;
    ref: string;
    rationale: string;
    ok: (v: unknown, d: Record<string, unknown>) => boolean;
    set?: unknown;
    advice: string;
    containerNote?: string;
    guard?: (f: Facts) => string | undefined;
    id?: string;
  },
): Rule {
  return {
    id: o.id ?? `docker-daemon-${key}`,
    title: o.title,
    category: "docker daemon",
    severity: o.severity,
    rationale: o.rationale,
    refs: [o.ref],
    targets: HOST_TARGETS,
    containerNote: o.containerNote,
    check: (f) => {
      const d = f.dockerDaemon();
      if (!d) return na("Docker is not installed");
      if (d["<invalid>"]) return fail(String(d["<invalid>"]));
      const v = d[key];
      return o.ok(v, d)
        ? pass(`${key}: ${JSON.stringify(v ?? "(default)")}`)
        : fail(`${key}: ${JSON.stringify(v ?? "(default)")}`);
    },
    advice: o.advice,
    fix:
      o.set === undefined
        ? undefined
        : (f): Change[] =>
            f.dockerDaemon() ? [{ kind: "json", path: DAEMON_JSON, values: { [key]: o.set } }] : [],
    guard: o.guard,
  };
}

/** Containers on the default bridge that talk to each other would be cut off by icc=false. */
function iccGuard(f: Facts): string | undefined {
  const onBridge = f.containers.filter(
    (c) =>
      c.State?.Running !== false &&
      (c.HostConfig.NetworkMode === "default" || c.HostConfig.NetworkMode === "bridge"),
  );
  return onBridge.length
    ? `${onBridge.length} running containers use the default bridge (${onBridge.map((c) => c.Name.replace(/^\//, "")).join(", ")}); icc=false would cut them off from each other at the next daemon restart — move them to a user-defined network first`
    : undefined;
}

const truthy = (v: unknown) => v === true || v === "true";
const falsy = (v: unknown) => v === false || v === "false";
const hosts = (d: Record<string, unknown>) =>
  ((d.hosts as string[] | undefined) ?? []).filter((h) => /^tcp:\/\//.test(h));

const daemonRules: Rule[] = [
  daemonRule("icc", {
    title: "Containers on the default bridge cannot talk to each other",
    severity: "medium",
    ref: "CIS Docker 2.2",
    rationale:
      "By default every container can reach every other one on docker0; a compromised one probes its neighbours.",
    ok: falsy,
    set: false,
    advice:
      'Set "icc": false in /etc/docker/daemon.json; give containers that must talk a user-defined network.',
    guard: iccGuard,
    containerNote:
      "Refused while containers run on the default bridge: they would lose each other at the next restart.",
  }),
  daemonRule("userns-remap", {
    title: "Containers run in a user namespace",
    severity: "medium",
    ref: "CIS Docker 2.10",
    rationale: "Root in a container is root on the host unless user IDs are remapped.",
    ok: (v) => typeof v === "string" && v.length > 0,
    advice: 'Set "userns-remap": "default" (images are pulled again under the remapped storage).',
    containerNote:
      "Not applied automatically: remapping hides existing images and volumes from the daemon until they are pulled or chowned again.",
  }),
  daemonRule("live-restore", {
    title: "Containers keep running while dockerd restarts",
    severity: "low",
    ref: "CIS Docker 2.15",
    rationale: "Daemon upgrades and configuration changes should not take workloads down.",
    ok: truthy,
    set: true,
    advice: 'Set "live-restore": true.',
  }),
  daemonRule("no-new-privileges", {
    title: "Containers cannot gain privileges by default",
    severity: "medium",
    ref: "CIS Docker 2.18",
    rationale: "Stops set-user-ID binaries inside containers from raising privileges.",
    ok: truthy,
    set: true,
    advice: 'Set "no-new-privileges": true.',
  }),
  daemonRule("userland-proxy", {
    title: "Published ports use iptables, not the userland proxy",
    severity: "low",
    ref: "CIS Docker 2.16",
    rationale: "docker-proxy is one more process per port and hides client addresses.",
    ok: falsy,
    set: false,
    advice: 'Set "userland-proxy": false.',
  }),
  daemonRule("log-opts", {
    id: "docker-daemon-log-limits",
    title: "Container logs are size-limited",
    severity: "low",
    ref: "CIS Docker 2.13",
    rationale: "A chatty container fills /var with an unbounded json log.",
    ok: (v, d) =>
      ["journald", "syslog", "local", "none"].includes(String(d["log-driver"] ?? "json-file")) ||
      !!(v as Record<string, string> | undefined)?.["max-size"],
    set: { "max-size": "10m", "max-file": "3" },
    advice: 'Set "log-opts": {"max-size": "10m", "max-file": "3"} (or use the local or journald driver).',
  }),
  daemonRule("hosts", {
    id: "docker-daemon-tcp-tls",
    title: "A TCP Docker socket requires TLS client certificates",
    severity: "critical",
    ref: "CIS Docker 2.6",
    rationale:
      "The Docker API is root on the host; without mutual TLS anyone who reaches the port owns the node.",
    ok: (_, d) =>
      hosts(d).length === 0 || (truthy(d.tlsverify) && !!d.tlscacert && !!d.tlscert && !!d.tlskey),
    advice: 'Remove tcp:// hosts, or set "tlsverify": true with tlscacert, tlscert and tlskey.',
  }),
  daemonRule("iptables", {
    title: "Docker manages iptables",
    severity: "medium",
    ref: "CIS Docker 2.4",
    rationale: "With iptables off, published ports and isolation rules are not enforced.",
    ok: (v) => !falsy(v),
    advice: 'Remove "iptables": false.',
  }),
  daemonRule("ip-forward", {
    title: "Docker keeps IP forwarding on",
    severity: "low",
    ref: "Docker networking",
    rationale: "Containers lose the network when forwarding is off.",
    ok: (v) => !falsy(v),
    advice: 'Remove "ip-forward": false.',
    containerNote: "The opposite of the CIS host benchmark's forwarding rule, on purpose.",
  }),
  daemonRule("insecure-registries", {
    title: "No insecure registries",
    severity: "medium",
    ref: "CIS Docker 2.5",
    rationale: "Images pulled over plain HTTP can be replaced in transit.",
    ok: (v) => !Array.isArray(v) || v.length === 0,
    advice: 'Remove "insecure-registries" and give registries TLS.',
  }),
  daemonRule("storage-driver", {
    title: "A supported storage driver (not aufs or devicemapper)",
    severity: "low",
    ref: "CIS Docker 2.6",
    rationale: "Deprecated drivers receive no fixes.",
    ok: (v) => v === undefined || !["aufs", "devicemapper"].includes(String(v)),
    advice: 'Use "storage-driver": "overlay2".',
  }),
  daemonRule("seccomp-profile", {
    title: "The default seccomp profile is not disabled",
    severity: "high",
    ref: "CIS Docker 2.17",
    rationale: "The profile blocks dozens of syscalls containers never need.",
    ok: (v) => v === undefined || (v !== "unconfined" && v !== ""),
    advice: 'Remove "seccomp-profile": "unconfined".',
  }),
  daemonRule("experimental", {
    title: "Experimental features are off",
    severity: "low",
    ref: "CIS Docker 2.19",
    rationale: "Experimental code is not meant for production.",
    ok: (v) => !truthy(v),
    advice: 'Remove "experimental": true.',
  }),
  daemonRule("debug", {
    title: "The daemon is not in debug mode",
    severity: "low",
    ref: "CIS Docker 2.3",
    rationale: "Debug logs can leak secrets and grow fast.",
    ok: (v) => !truthy(v),
    advice: 'Remove "debug": true.',
  }),
  daemonRule("authorization-plugins", {
    title: "API requests go through an authorization plugin",
    severity: "info",
    ref: "CIS Docker 2.12",
    rationale: "Without one, every docker group member can do everything.",
    ok: (v) => Array.isArray(v) && v.length > 0,
    advice: "Consider an authorization plugin (e.g. OPA) where many people use the API.",
  }),
  daemonRule("default-cgroupns-mode", {
    title: "Containers get a private cgroup namespace",
    severity: "low",
    ref: "Docker cgroup v2",
    rationale: "A host cgroup namespace shows the host's cgroup tree to containers.",
    ok: (v) => v === undefined || v === "private",
    advice: 'Remove "default-cgroupns-mode": "host".',
  }),
  daemonRule("default-ulimits", {
    title: "Default ulimits are set deliberately",
    severity: "info",
    ref: "CIS Docker 2.8",
    rationale: "Default ulimits bound what one container can open.",
    ok: () => true,
    advice: "Set default-ulimits (nofile) if containers need more or less than the engine's default.",
  }),
  {
    id: "docker-group-members",
    title: "The docker group has only administrators",
    category: "docker daemon",
    severity: "medium",
    rationale: "Membership of the docker group is root on the host.",
    refs: ["CIS Docker 1.1.2"],
    targets: HOST_TARGETS,
    check: (f) => {
      const g = f.groups().find((x) => x.name === "docker");
      if (!g) return na("no docker group");
      const admins = new Set(
        f
          .groups()
          .filter((x) => x.name === "sudo" || x.name === "wheel")
          .flatMap((x) => x.members),
      );
      const others = g.members.filter((m) => m !== "root" && !admins.has(m));
      return others.length
        ? fail(`members who are not administrators: ${others.join(", ")} (each is root-equivalent)`, others)
        : pass(g.members.length ? `administrators only: ${g.members.join(", ")}` : "no members");
    },
    advice:
      "Remove users from the docker group who should not be root (administrators in sudo or wheel may stay).",
  },
  {
    id: "docker-content-trust",
    title: "Image signatures are required (content trust)",
    category: "docker daemon",
    severity: "info",
    rationale: "Unsigned images can be swapped at the registry.",
    refs: ["CIS Docker 4.5"],
    targets: ["host"],
    check: (f) =>
      !f.dockerDaemon()
        ? na("Docker is not installed")
        : process.env.DOCKER_CONTENT_TRUST === "1"
          ? pass("DOCKER_CONTENT_TRUST=1")
          : fail("DOCKER_CONTENT_TRUST is not 1 in this environment"),
    advice: "export DOCKER_CONTENT_TRUST=1 for users who pull images, or verify signatures in the pipeline.",
  },
];

const DANGEROUS_CAPS = [
  "ALL",
  "SYS_ADMIN",
  "SYS_MODULE",
  "SYS_PTRACE",
  "SYS_RAWIO",
  "DAC_READ_SEARCH",
  "NET_ADMIN",
  "SYS_BOOT",
  "SYS_TIME",
  "MAC_ADMIN",
  "MAC_OVERRIDE",
  "BPF",
  "PERFMON",
];
const SENSITIVE_PATHS = [
  "/",
  "/boot",
  "/dev",
  "/etc",
  "/lib",
  "/proc",
  "/sys",
  "/usr",
  "/var/lib/docker",
  "/root",
];

const name = (c: ContainerInfo) => c.Name.replace(/^\//, "");
const capNorm = (c: string) => c.toUpperCase().replace(/^CAP_/, "");

/** A container rule checks the one container (container target) or every running one (host). */
function containerRule(
  id: string,
  o: {
    title: string;
    severity: RuleSeverity;
    ref: string;
    rationale: string;
    advice: string;
    bad: (c: ContainerInfo) => string | undefined;
  },
): Rule {
  return {
    id: `container-${id}`,
    title: o.title,
    category: "containers",
    severity: o.severity,
    rationale: o.rationale,
    refs: [o.ref],
    targets: ["host", "container"],
    check: (f): CheckResult => {
      const list = f.container ? [f.container] : f.containers;
      if (!list.length) return na("no running containers");
      const bad = list.flatMap((c) => {
        const why = o.bad(c);
        return why ? [`${name(c)}: ${why}`] : [];
      });
      return bad.length
        ? fail(`${bad.length} of ${list.length} containers`, bad)
        : pass(`${list.length} containers checked`);
    },
    advice: o.advice,
  };
}

const sec = (c: ContainerInfo) => c.HostConfig.SecurityOpt ?? [];

const containerRules: Rule[] = [
  containerRule("privileged", {
    title: "No container runs privileged",
    severity: "critical",
    ref: "CIS Docker 5.5",
    rationale: "--privileged gives every capability and every device: the container is the host.",
    advice: "Drop --privileged; add only the capabilities and devices needed.",
    bad: (c) => (c.HostConfig.Privileged ? "privileged" : undefined),
  }),
  containerRule("dangerous-caps", {
    title: "No container adds dangerous capabilities",
    severity: "high",
    ref: "CIS Docker 5.3",
    rationale: "SYS_ADMIN, SYS_MODULE, SYS_PTRACE and friends are escape routes.",
    advice: "Remove the listed --cap-add flags.",
    bad: (c) => {
      const caps = (c.HostConfig.CapAdd ?? []).map(capNorm).filter((x) => DANGEROUS_CAPS.includes(x));
      return caps.length ? `adds ${caps.join(", ")}` : undefined;
    },
  }),
  containerRule("host-network", {
    title: "No container shares the host's network namespace",
    severity: "medium",
    ref: "CIS Docker 5.9",
    rationale: "--network host exposes every host interface and lets the container bind any port.",
    advice: "Use a bridge or user-defined network and publish ports.",
    bad: (c) => (c.HostConfig.NetworkMode === "host" ? "network host" : undefined),
  }),
  containerRule("host-pid", {
    title: "No container shares the host's process namespace",
    severity: "high",
    ref: "CIS Docker 5.15",
    rationale: "--pid host lets the container see and signal every host process.",
    advice: "Remove --pid host.",
    bad: (c) => (c.HostConfig.PidMode === "host" ? "pid host" : undefined),
  }),
  containerRule("host-ipc", {
    title: "No container shares the host's IPC namespace",
    severity: "medium",
    ref: "CIS Docker 5.16",
    rationale: "Shared memory of host processes becomes readable.",
    advice: "Remove --ipc host.",
    bad: (c) => (c.HostConfig.IpcMode === "host" ? "ipc host" : undefined),
  }),
  containerRule("host-uts", {
    title: "No container shares the host's UTS namespace",
    severity: "low",
    ref: "CIS Docker 5.20",
    rationale: "The container could change the host's hostname.",
    advice: "Remove --uts host.",
    bad: (c) => (c.HostConfig.UTSMode === "host" ? "uts host" : undefined),
  }),
  containerRule("host-userns", {
    title: "No container opts out of user namespace remapping",
    severity: "medium",
    ref: "CIS Docker 5.30",
    rationale: "--userns host undoes remapping for that container.",
    advice: "Remove --userns host.",
    bad: (c) => (c.HostConfig.UsernsMode === "host" ? "userns host" : undefined),
  }),
  containerRule("host-cgroupns", {
    title: "No container shares the host's cgroup namespace",
    severity: "low",
    ref: "Docker cgroup v2",
    rationale: "The host cgroup tree becomes visible and, with write access, changeable.",
    advice: "Remove --cgroupns host.",
    bad: (c) => (c.HostConfig.CgroupnsMode === "host" ? "cgroupns host" : undefined),
  }),
  containerRule("docker-socket", {
    title: "No container mounts the Docker socket",
    severity: "critical",
    ref: "CIS Docker 5.31",
    rationale: "The Docker socket in a container is root on the host.",
    advice: "Remove the docker.sock mount; use a narrowly scoped API proxy if needed.",
    bad: (c) =>
      (c.Mounts ?? []).some((m) => /\/docker\.sock$|\/containerd\.sock$/.test(m.Source ?? ""))
        ? "mounts the engine socket"
        : undefined,
  }),
  containerRule("sensitive-mounts", {
    title: "No container mounts sensitive host directories",
    severity: "high",
    ref: "CIS Docker 5.5",
    rationale: "Host /, /etc, /proc or /sys in a container lets it change or read the host.",
    advice: "Mount only the data directories the workload needs.",
    bad: (c) => {
      const m = (c.Mounts ?? []).filter(
        (x) => x.Type === "bind" && SENSITIVE_PATHS.includes((x.Source ?? "").replace(/\/+$/, "") || "/"),
      );
      return m.length ? `mounts ${m.map((x) => `${x.Source}${x.RW ? " (rw)" : ""}`).join(", ")}` : undefined;
    },
  }),
  containerRule("mount-propagation", {
    title: "No mount is shared with the host",
    severity: "medium",
    ref: "CIS Docker 5.19",
    rationale: "Shared propagation lets mounts inside the container appear on the host.",
    advice: "Use private or rprivate propagation.",
    bad: (c) =>
      (c.Mounts ?? []).some((m) => /^r?shared$/.test(m.Propagation ?? ""))
        ? "shared mount propagation"
        : undefined,
  }),
  containerRule("memory-limit", {
    title: "Every container has a memory limit",
    severity: "medium",
    ref: "CIS Docker 5.10",
    rationale: "One container can otherwise exhaust the host's memory.",
    advice: "Run with --memory.",
    bad: (c) => (!c.HostConfig.Memory ? "no memory limit" : undefined),
  }),
  containerRule("pids-limit", {
    title: "Every container has a process limit",
    severity: "medium",
    ref: "CIS Docker 5.28",
    rationale: "A fork bomb in one container takes the host down.",
    advice: "Run with --pids-limit.",
    bad: (c) => (!c.HostConfig.PidsLimit || c.HostConfig.PidsLimit <= 0 ? "no pids limit" : undefined),
  }),
  containerRule("cpu-limit", {
    title: "Every container has CPU shares or a CPU limit",
    severity: "low",
    ref: "CIS Docker 5.11",
    rationale: "A busy container otherwise starves the rest.",
    advice: "Run with --cpus or --cpu-shares.",
    bad: (c) =>
      !c.HostConfig.NanoCpus && !c.HostConfig.CpuShares && !c.HostConfig.CpuQuota
        ? "no CPU limit"
        : undefined,
  }),
  containerRule("read-only-root", {
    title: "Containers' root file systems are read-only",
    severity: "low",
    ref: "CIS Docker 5.12",
    rationale: "An attacker cannot drop tools into a read-only root.",
    advice: "Run with --read-only and tmpfs/volumes for writable paths.",
    bad: (c) => (!c.HostConfig.ReadonlyRootfs ? "writable root" : undefined),
  }),
  containerRule("seccomp", {
    title: "No container runs without seccomp",
    severity: "high",
    ref: "CIS Docker 5.21",
    rationale: "seccomp=unconfined opens every syscall to the container.",
    advice: "Remove --security-opt seccomp=unconfined.",
    bad: (c) => (sec(c).some((s) => /^seccomp[=:]unconfined$/.test(s)) ? "seccomp unconfined" : undefined),
  }),
  containerRule("apparmor", {
    title: "No container runs without AppArmor",
    severity: "high",
    ref: "CIS Docker 5.1",
    rationale: "Unconfined containers lose the docker-default profile's protections.",
    advice: "Remove --security-opt apparmor=unconfined.",
    bad: (c) =>
      sec(c).some((s) => /^apparmor[=:]unconfined$/.test(s)) || c.AppArmorProfile === "unconfined"
        ? "apparmor unconfined"
        : undefined,
  }),
  containerRule("no-new-privileges", {
    title: "Containers cannot gain new privileges",
    severity: "medium",
    ref: "CIS Docker 5.26",
    rationale: "Set-user-ID programs inside could otherwise raise privileges.",
    advice: "Run with --security-opt no-new-privileges (or set it daemon-wide).",
    bad: (c) =>
      !sec(c).some((s) => /^no-new-privileges(:true|=true)?$/.test(s))
        ? "no-new-privileges not set"
        : undefined,
  }),
  containerRule("non-root", {
    title: "Containers do not run as root",
    severity: "medium",
    ref: "CIS Docker 4.1",
    rationale: "Root inside is one kernel bug away from root outside.",
    advice: "Run with --user or set USER in the image.",
    bad: (c) => (!c.Config.User || /^(0|root)(:|$)/.test(c.Config.User) ? "runs as root" : undefined),
  }),
  containerRule("devices", {
    title: "No host devices are passed in",
    severity: "medium",
    ref: "CIS Docker 5.18",
    rationale: "A device node gives direct access to hardware.",
    advice: "Remove --device unless the workload needs the hardware.",
    bad: (c) =>
      (c.HostConfig.Devices ?? []).length ? `${(c.HostConfig.Devices ?? []).length} devices` : undefined,
  }),
  containerRule("privileged-ports", {
    title: "No privileged host ports are published",
    severity: "low",
    ref: "CIS Docker 5.8",
    rationale: "Ports below 1024 are reserved for system services.",
    advice: "Publish on ports 1024 and above; front with a proxy.",
    bad: (c) => {
      const p = Object.values(c.HostConfig.PortBindings ?? {})
        .flatMap((b) => b ?? [])
        .filter((b) => Number(b.HostPort) > 0 && Number(b.HostPort) < 1024);
      return p.length ? `publishes ${p.map((b) => b.HostPort).join(", ")}` : undefined;
    },
  }),
  containerRule("restart-policy", {
    title: "Restart policies are bounded",
    severity: "low",
    ref: "CIS Docker 5.15",
    rationale: "An endlessly restarting container hides a failure and can be a denial of service.",
    advice: "Use --restart on-failure:5 (or unless-stopped with monitoring).",
    bad: (c) => (c.HostConfig.RestartPolicy?.Name === "always" ? "restart always" : undefined),
  }),
  containerRule("healthcheck", {
    title: "Containers have a health check",
    severity: "info",
    ref: "CIS Docker 4.6",
    rationale: "Without one, a hung service looks healthy.",
    advice: "Add HEALTHCHECK to the image or --health-cmd.",
    bad: (c) =>
      !c.Config.Healthcheck?.Test?.length || c.Config.Healthcheck.Test[0] === "NONE"
        ? "no health check"
        : undefined,
  }),
  containerRule("secrets-in-env", {
    title: "No secrets in environment variables",
    severity: "high",
    ref: "CIS Docker 4.10",
    rationale: "Environment variables are visible in docker inspect and to every process in the container.",
    advice: "Pass secrets as files (mounted secrets) instead.",
    bad: (c) => secretEnv(c.Config.Env),
  }),
];

function secretEnv(env: string[] | undefined): string | undefined {
  const hits = (env ?? [])
    .filter((e) => /^[^=]*(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|API_KEY)[^=]*=./i.test(e))
    .map((e) => e.split("=")[0]!);
  return hits.length ? `secret-like variables ${hits.join(", ")}` : undefined;
}

const imageRules: Rule[] = [
  {
    id: "image-non-root-user",
    title: "The image runs as a non-root user",
    category: "images",
    severity: "medium",
    rationale: "Containers from this image run as root unless every user remembers --user.",
    refs: ["CIS Docker 4.1"],
    targets: ["image"],
    check: (f) =>
      !f.image?.Config?.User || /^(0|root)(:|$)/.test(f.image.Config.User)
        ? fail(`USER ${f.image?.Config?.User || "(unset: root)"}`)
        : pass(`USER ${f.image.Config.User}`),
    advice: "Set USER to a non-root account in the image.",
  },
  {
    id: "image-healthcheck",
    title: "The image declares a health check",
    category: "images",
    severity: "info",
    rationale: "Orchestrators can only restart what they know is unhealthy.",
    refs: ["CIS Docker 4.6"],
    targets: ["image"],
    check: (f) =>
      f.image?.Config?.Healthcheck?.Test?.length ? pass("HEALTHCHECK set") : fail("no HEALTHCHECK"),
    advice: "Add a HEALTHCHECK.",
  },
  {
    id: "image-secrets-in-env",
    title: "The image bakes no secrets into its environment",
    category: "images",
    severity: "high",
    rationale: "Anyone who can pull the image reads them.",
    refs: ["CIS Docker 4.10"],
    targets: ["image"],
    check: (f) => {
      const s = secretEnv(f.image?.Config?.Env);
      return s ? fail(s) : pass("no secret-like variables");
    },
    advice: "Remove secrets from ENV; supply them at run time as files.",
  },
  {
    id: "image-setuid-files",
    title: "The image carries no set-user-ID or set-group-ID files",
    category: "images",
    severity: "low",
    rationale: "Containers rarely need them; each one is a privilege-escalation path inside the container.",
    refs: ["CIS Docker 4.8"],
    targets: ["image"],
    check: (f) => {
      const w = f.walk();
      const list = [...w.suid, ...w.sgid].map((e) => `${e.path} (${e.mode.toString(8)})`);
      return list.length ? fail(`${list.length} files`, list) : pass(`none among ${w.files} files`);
    },
    advice: "Remove the bits in the image build (chmod a-s).",
  },
  {
    id: "image-tagged",
    title: "The image has a tag other than latest",
    category: "images",
    severity: "info",
    rationale: "A pinned tag (or digest) makes deployments repeatable.",
    refs: ["CIS Docker 4.x"],
    targets: ["image"],
    check: (f) => {
      const tags = f.image?.RepoTags ?? [];
      return tags.some((t) => !t.endsWith(":latest"))
        ? pass(tags.join(", "))
        : fail(tags.length ? tags.join(", ") : "untagged");
    },
    advice: "Tag images with a version and deploy by digest.",
  },
];

export const dockerRules: Rule[] = [...daemonRules, ...containerRules, ...imageRules];
