// A real Kubernetes API server for one test file (../shared/tools/kube-apiserver: etcd plus
// kube-apiserver v1.20.2 on loopback, envtest-style), Berth's manifests applied to it with kubectl, and
// a kubeconfig that authenticates as the operator's own ServiceAccount (a TokenRequest token), so the
// operator under test has exactly the RBAC the manifests grant.

import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { BERTH, besideRepository, run, tempDir } from "../helpers.ts";

export const KUBE_TOOLS = besideRepository("tools/kube-apiserver");

export interface Cluster {
  dir: string;
  /** Admin kubeconfig (system:masters). */
  kubeconfig: string;
  server: string;
  kc: KubeConfig;
  core: CoreV1Api;
  kubectl: (args: string[], input?: string) => Promise<{ code: number; stdout: string; stderr: string }>;
  stop: () => Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
  });
}

/** A port with the next two free as well (etcd takes them). */
async function freeTriple(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    if ((await portFree(base)) && (await portFree(base + 1)) && (await portFree(base + 2))) return base;
  }
  throw new Error("no three free consecutive ports");
}

export async function startCluster(): Promise<Cluster> {
  const dir = tempDir("berth-k8s-");
  let started = false;
  for (let attempt = 0; attempt < 3 && !started; attempt++) {
    const port = await freeTriple();
    const r = await run(join(KUBE_TOOLS, "start.sh"), [join(dir, "srv"), String(port)]);
    if (r.code === 0) started = true;
    else {
      spawnSync(join(KUBE_TOOLS, "stop.sh"), [join(dir, "srv")]);
      if (attempt === 2) throw new Error(`start.sh failed: ${r.stderr.trim()}`);
    }
  }
  const srv = join(dir, "srv");
  // Whatever happens to the test, the servers go with it.
  process.on("exit", () => spawnSync(join(KUBE_TOOLS, "stop.sh"), [srv]));
  const kubeconfig = join(srv, "kubeconfig");
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const kubectl = (args: string[], input?: string) =>
    run("kubectl", ["--kubeconfig", kubeconfig, ...args], { input });
  return {
    dir,
    kubeconfig,
    server: kc.getCurrentCluster()!.server,
    kc,
    core: kc.makeApiClient(CoreV1Api),
    kubectl,
    stop: async () => {
      spawnSync(join(KUBE_TOOLS, "stop.sh"), [srv]);
    },
  };
}

/**
 * `berth k8s manifests ... | kubectl apply --server-side -f -`; throws with kubectl's words. Returns
 * the manifests as berth printed them.
 */
export async function installBerth(c: Cluster, namespace: string, extra: string[] = []): Promise<string> {
  const m = await run(BERTH, ["k8s", "manifests", "--namespace", namespace, ...extra]);
  if (m.code !== 0) throw new Error(`berth k8s manifests: ${m.stderr}`);
  const a = await c.kubectl(["apply", "--server-side", "-f", "-"], m.stdout);
  if (a.code !== 0) throw new Error(`kubectl apply: ${a.stderr}`);
  const w = await c.kubectl([
    "wait",
    "--for=condition=Established",
    "crd/updateplans.berth.dev",
    "--timeout=60s",
  ]);
  if (w.code !== 0) throw new Error(`kubectl wait: ${w.stderr}`);
  return m.stdout;
}

/**
 * A kubeconfig for the operator's ServiceAccount: a token from the TokenRequest API (on here: the
 * server has a signing key), the cluster's CA, nothing of the admin's.
 */
export async function serviceAccountKubeconfig(
  c: Cluster,
  namespace: string,
  account: string,
): Promise<string> {
  const tr = await c.core.createNamespacedServiceAccountToken({
    name: account,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 * 6 } },
  });
  const token = tr.status?.token;
  if (!token) throw new Error("TokenRequest gave no token");
  const cluster = c.kc.getCurrentCluster()!;
  const file = join(c.dir, `${account}.kubeconfig`);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "test", cluster: { server: cluster.server, "certificate-authority": cluster.caFile } },
      ],
      users: [{ name: account, user: { token } }],
      contexts: [{ name: account, context: { cluster: "test", user: account } }],
      "current-context": account,
    }),
  );
  return file;
}
