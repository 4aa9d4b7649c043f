// `berth k8s manifests`: everything a cluster needs to run Berth's node agent and operator, as plain
// Kubernetes objects that kustomize (and kubectl apply -k) can take: a namespace, service accounts,
// least-privilege RBAC, the agent DaemonSet, the operator Deployment and the UpdatePlan CRD.
//
// Every permission and every host mount carries the reason it is there. The reasons ride along in the
// objects under a "#" key (about the object) or "#field" (about one field), which renderYaml turns into
// YAML comments and cleanObject strips.

import { randomBytes } from "node:crypto";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type Node, parseDocument, type Scalar, stringify, visit } from "yaml";
import { BerthError } from "../common/errors.ts";
import { updatePlanCrd } from "./crd.ts";
import {
  AGENT_NAME,
  DEFAULT_IMAGE,
  DEFAULT_NAMESPACE,
  FLEET_SECRET,
  GROUP,
  OPERATOR_NAME,
  PLAN_PLURAL,
} from "./names.ts";

type Json = Record<string, unknown>;

export interface ManifestOptions {
  namespace?: string;
  image?: string;
  /** The fleet server's URL, as the nodes and the operator reach it. */
  server?: string;
}

export interface ManifestFile {
  /** File name in a kustomize base. */
  file: string;
  /** What the file is for (its header comment). */
  about: string;
  objects: Json[];
}

const why = (reason: string, o: Json): Json => ({ "#": reason, ...o });

const labels = (component: string) => ({
  "app.kubernetes.io/name": component,
  "app.kubernetes.io/part-of": "berth",
});

function operatorRules(): Json[] {
  return [
    why(
      "select a plan's Nodes and watch them come back Ready; patch: cordon and uncordon (spec.unschedulable)",
      {
        apiGroups: [""],
        resources: ["nodes"],
        verbs: ["get", "list", "watch", "patch"],
      },
    ),
    why("drain: list the pods bound to a node and watch them until the evicted ones are gone (no write)", {
      apiGroups: [""],
      resources: ["pods"],
      verbs: ["get", "list", "watch"],
    }),
    why("drain through the Eviction API, so the API server enforces every PodDisruptionBudget", {
      apiGroups: [""],
      resources: ["pods/eviction"],
      verbs: ["create"],
    }),
    why("read plans; patch: set spec.paused when the failure budget is spent or a drain stays blocked", {
      apiGroups: [GROUP],
      resources: [PLAN_PLURAL],
      verbs: ["get", "list", "watch", "patch"],
    }),
    why("report per-node phases, counts and conditions", {
      apiGroups: [GROUP],
      resources: [`${PLAN_PLURAL}/status`],
      verbs: ["patch"],
    }),
  ];
}

function operatorNamespaceRules(): Json[] {
  return [
    why(
      "one Lease per node being updated (the slot; survives an operator restart) and the leader-election Lease; only in this namespace",
      {
        apiGroups: ["coordination.k8s.io"],
        resources: ["leases"],
        verbs: ["get", "list", "watch", "create", "update", "patch", "delete"],
      },
    ),
  ];
}

function hostMount(name: string, hostPath: string, mountPath: string, reason: string, readOnly = false) {
  return {
    volume: why(reason, { name, hostPath: { path: hostPath } }),
    mount: { name, mountPath, ...(readOnly ? { readOnly: true } : {}) },
  };
}

function agentDaemonSet(ns: string, image: string, server: string | undefined): Json {
  const mounts = [
    hostMount(
      "state",
      "/var/lib/berth",
      "/var/lib/berth",
      "the agent's key, report queue and the node's update state: kept across pod restarts and reboots",
    ),
    hostMount(
      "dev",
      "/dev",
      "/dev",
      "A/B updates write the inactive root slot's block device and its dm-verity tree",
    ),
    hostMount(
      "efi",
      "/efi",
      "/efi",
      "the EFI system partition: systemd-boot entries and boot counting for the new slot",
    ),
    hostMount(
      "host-root",
      "/",
      "/host",
      "read-only view of the host for inventories (dpkg status, kernels, os-release) and hardening checks",
      true,
    ),
    hostMount(
      "run-systemd",
      "/run/systemd",
      "/run/systemd",
      "reboot into the new slot and read unit state through the host's systemd",
    ),
    hostMount(
      "docker-sock",
      "/run/docker.sock",
      "/run/docker.sock",
      "report running containers and their images; reload pinned images after an update",
    ),
    hostMount(
      "sys",
      "/sys",
      "/sys",
      "kernel live patches: /sys/kernel/livepatch; boot state from /sys/firmware/efi",
    ),
  ];
  const env: Json[] = [
    {
      name: "BERTH_ENROLL_TOKEN",
      valueFrom: { secretKeyRef: { name: FLEET_SECRET, key: "enroll-token", optional: true } },
    },
    { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
  ];
  const stateDir = "/var/lib/berth/agent";
  const serverArgs = server ? ["--server", server] : [];
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name: AGENT_NAME, namespace: ns, labels: labels(AGENT_NAME) },
    spec: {
      selector: { matchLabels: { "app.kubernetes.io/name": AGENT_NAME } },
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: { labels: labels(AGENT_NAME) },
        spec: {
          "#": "the agent needs no Kubernetes API access: it talks only to the fleet server",
          serviceAccountName: AGENT_NAME,
          automountServiceAccountToken: false,
          priorityClassName: "system-node-critical",
          "#hostPID":
            "live library patching attaches to host processes with ptrace and reads /proc/PID/maps: only possible in the host's PID namespace",
          hostPID: true,
          "#hostNetwork":
            "the agent reports the host's own hostname (how the operator matches Nodes to fleet nodes) and reaches the fleet server as the host does",
          hostNetwork: true,
          dnsPolicy: "ClusterFirstWithHostNet",
          tolerations: [
            why("every taint: a cordoned, draining or NotReady node still needs its agent", {
              operator: "Exists",
            }),
          ],
          initContainers: [
            {
              name: "enroll",
              image,
              command: ["berth"],
              args: [
                "agent",
                "enroll",
                ...serverArgs,
                "--token",
                "$(BERTH_ENROLL_TOKEN)",
                "--state-dir",
                stateDir,
                "--if-needed",
              ],
              env,
              "#securityContext":
                "root (the image's user is berth, 65532) to write the host's agent state; no privileges",
              securityContext: { runAsUser: 0, privileged: false, allowPrivilegeEscalation: false },
              volumeMounts: [mounts[0]!.mount],
              resources: {
                requests: { cpu: "10m", memory: "64Mi" },
                limits: { cpu: "500m", memory: "256Mi" },
              },
            },
          ],
          containers: [
            {
              name: "agent",
              image,
              command: ["berth"],
              args: ["agent", "run", "--state-dir", stateDir],
              env,
              securityContext: why(
                "privileged only here: writing the inactive slot's block device, ptrace into host processes and loading livepatch modules need it",
                { privileged: true, runAsUser: 0, readOnlyRootFilesystem: true },
              ),
              volumeMounts: mounts.map((m) => m.mount),
              resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { cpu: "1", memory: "512Mi" } },
            },
          ],
          volumes: mounts.map((m) => m.volume),
        },
      },
    },
  };
}

function operatorDeployment(ns: string, image: string, server: string | undefined): Json {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels(OPERATOR_NAME) },
    spec: {
      "#": "two replicas: one leads (a Lease), the other takes over when the leader's node is drained",
      replicas: 2,
      selector: { matchLabels: { "app.kubernetes.io/name": OPERATOR_NAME } },
      template: {
        metadata: { labels: labels(OPERATOR_NAME) },
        spec: {
          serviceAccountName: OPERATOR_NAME,
          priorityClassName: "system-cluster-critical",
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            runAsGroup: 65532,
            seccompProfile: { type: "RuntimeDefault" },
          },
          affinity: {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                why("keep the two replicas on different nodes, so draining one node never stops both", {
                  weight: 100,
                  podAffinityTerm: {
                    topologyKey: "kubernetes.io/hostname",
                    labelSelector: { matchLabels: { "app.kubernetes.io/name": OPERATOR_NAME } },
                  },
                }),
              ],
            },
          },
          containers: [
            {
              name: "operator",
              image,
              command: ["berth"],
              args: [
                "operator",
                "--namespace",
                "$(POD_NAMESPACE)",
                "--identity",
                "$(POD_NAME)",
                ...(server ? ["--server", server] : []),
                "--token-file",
                "/etc/berth/fleet/api-token",
              ],
              env: [
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
              ],
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
              volumeMounts: [{ name: "fleet", mountPath: "/etc/berth/fleet", readOnly: true }],
              resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { cpu: "1", memory: "512Mi" } },
            },
          ],
          volumes: [
            why(
              "the fleet server's API token (kubectl create secret generic berth-fleet --from-literal=api-token=...)",
              {
                name: "fleet",
                secret: { secretName: FLEET_SECRET, items: [{ key: "api-token", path: "api-token" }] },
              },
            ),
          ],
        },
      },
    },
  };
}

/** The manifests as files of a kustomize base. */
export function manifests(o: ManifestOptions = {}): ManifestFile[] {
  const ns = o.namespace ?? DEFAULT_NAMESPACE;
  const image = o.image ?? DEFAULT_IMAGE;
  const subject = { kind: "ServiceAccount", name: OPERATOR_NAME, namespace: ns };
  return [
    {
      file: "namespace.yaml",
      about: "the namespace of the agent and the operator",
      objects: [
        {
          apiVersion: "v1",
          kind: "Namespace",
          metadata: {
            name: ns,
            labels: {
              ...labels("berth"),
              "#pod-security.kubernetes.io/enforce":
                "the agent is privileged (slot writes, ptrace): Pod Security admission must allow it here",
              "pod-security.kubernetes.io/enforce": "privileged",
            },
          },
        },
      ],
    },
    {
      file: "crd.yaml",
      about: "UpdatePlan: an OS release, live patch or hardening profile rolled out node by node",
      objects: [updatePlanCrd()],
    },
    {
      file: "rbac.yaml",
      about: "service accounts and least-privilege RBAC; the agent gets none",
      objects: [
        {
          apiVersion: "v1",
          kind: "ServiceAccount",
          metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels(OPERATOR_NAME) },
        },
        {
          apiVersion: "v1",
          kind: "ServiceAccount",
          metadata: { name: AGENT_NAME, namespace: ns, labels: labels(AGENT_NAME) },
          automountServiceAccountToken: false,
        },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRole",
          metadata: { name: OPERATOR_NAME, labels: labels(OPERATOR_NAME) },
          rules: operatorRules(),
        },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRoleBinding",
          metadata: { name: OPERATOR_NAME, labels: labels(OPERATOR_NAME) },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: OPERATOR_NAME },
          subjects: [subject],
        },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "Role",
          metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels(OPERATOR_NAME) },
          rules: operatorNamespaceRules(),
        },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "RoleBinding",
          metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels(OPERATOR_NAME) },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: OPERATOR_NAME },
          subjects: [subject],
        },
      ],
    },
    {
      file: "agent.yaml",
      about: "the node agent on every node: reports to the fleet server and carries out its jobs",
      objects: [agentDaemonSet(ns, image, o.server)],
    },
    {
      file: "operator.yaml",
      about: "the operator: rolls UpdatePlans over the nodes, one slot at a time",
      objects: [operatorDeployment(ns, image, o.server)],
    },
  ];
}

/** The object without its "#" reasons: what goes to the API server. */
export function cleanObject<T>(value: T): T {
  if (Array.isArray(value)) return value.map(cleanObject) as T;
  if (value && typeof value === "object") {
    const out: Json = {};
    for (const [k, v] of Object.entries(value)) if (!k.startsWith("#")) out[k] = cleanObject(v);
    return out as T;
  }
  return value;
}

/** YAML documents with every reason as a comment above the thing it explains. */
export function renderYaml(objects: Json[], header?: string): string {
  return objects
    .map((o, i) => {
      const doc = parseDocument(stringify(o, { lineWidth: 0, aliasDuplicateObjects: false }));
      visit(doc, {
        Map(_, map) {
          const keyOf = (p: (typeof map.items)[number]) => String((p.key as Scalar | null)?.value ?? "");
          for (const p of map.items.filter((p) => keyOf(p).startsWith("#"))) {
            const comment = ` ${String((p.value as Scalar).value)}`;
            const about = keyOf(p).slice(1);
            const target = about ? map.items.find((q) => keyOf(q) === about)?.key : map;
            if (target) (target as Node).commentBefore = comment;
          }
          map.items = map.items.filter((p) => !keyOf(p).startsWith("#"));
        },
      });
      if (i === 0 && header) doc.commentBefore = header.replace(/^/gm, " ");
      return doc.toString({ lineWidth: 0 });
    })
    .join("---\n");
}

/** A kustomize base: one file per group of objects, and the kustomization.yaml naming them. */
export function kustomizeBase(files: ManifestFile[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of files) out.set(f.file, renderYaml(f.objects, f.about));
  out.set(
    "kustomization.yaml",
    stringify({
      apiVersion: "kustomize.config.k8s.io/v1beta1",
      kind: "Kustomization",
      resources: files.map((f) => f.file),
    }),
  );
  return out;
}

/**
 * Writes a kustomize base into `dir` as a whole: built in a sibling temp directory, then renamed into
 * place (an existing directory is swapped out only after the new one is complete).
 */
export async function writeKustomizeBase(dir: string, files: ManifestFile[]): Promise<string[]> {
  const target = resolve(dir);
  const tmp = `${target}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const old = `${tmp}.old`;
  const base = kustomizeBase(files);
  try {
    await mkdir(tmp, { recursive: true });
    for (const [name, text] of base) await writeFile(join(tmp, name), text);
    const had = await stat(target).then(
      (s) => {
        if (!s.isDirectory()) throw new BerthError(`${dir} exists and is not a directory`);
        return true;
      },
      () => false,
    );
    if (had) await rename(target, old);
    await rename(tmp, target);
    if (had) await rm(old, { recursive: true, force: true });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return [...base.keys()].map((n) => join(target, n));
}
