// `berth k8s`: what a Kubernetes cluster needs to run Berth (manifests for the agent DaemonSet, the
// operator Deployment, RBAC and the UpdatePlan CRD).

import type { Command } from "commander";
import { UsageError } from "../../common/errors.ts";
import { cleanObject, manifests, renderYaml, writeKustomizeBase } from "../../k8s/manifests.ts";
import { DEFAULT_IMAGE, DEFAULT_NAMESPACE } from "../../k8s/names.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";

interface ManifestFlags {
  namespace: string;
  image: string;
  server?: string;
  out?: string;
  json?: boolean;
}

function checkFlags(o: ManifestFlags): void {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(o.namespace))
    throw new UsageError(`--namespace "${o.namespace}" is not a namespace name (lower-case DNS label)`);
  if (!o.image || /\s/.test(o.image)) throw new UsageError(`--image "${o.image}" is not an image reference`);
  if (o.server !== undefined) {
    let url: URL;
    try {
      url = new URL(o.server);
    } catch {
      throw new UsageError(`--server "${o.server}" is not a URL`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:")
      throw new UsageError(`--server wants an http:// or https:// URL, not "${o.server}"`);
  }
}

export function registerK8sCommands(program: Command): void {
  const k8s = program
    .command("k8s")
    .description("Kubernetes: manifests for the agent, the operator and UpdatePlans");
  k8s
    .command("manifests")
    .description("print (or write as a kustomize base) the manifests that run Berth in a cluster")
    .option("--namespace <ns>", "namespace of the agent and the operator", DEFAULT_NAMESPACE)
    .option("--image <ref>", "the Berth image (berth images build berth)", DEFAULT_IMAGE)
    .option("--server <url>", "the fleet server as nodes and the operator reach it")
    .option("--out <dir>", "write a kustomize base (one file per part and kustomization.yaml) into DIR")
    .option("--json", "one JSON List instead of YAML")
    .addHelpText(
      "after",
      `
Examples:
  berth k8s manifests --server https://fleet.example:8443 | kubectl apply --server-side -f -
  berth k8s manifests --out deploy/berth && kubectl apply -k deploy/berth
  berth k8s manifests --namespace berth --image registry.example/berth:0.1.0 --json`,
    )
    .action(async (o: ManifestFlags, cmd: Command) => {
      checkFlags(o);
      const files = manifests({ namespace: o.namespace, image: o.image, server: o.server });
      if (o.out) {
        const written = await writeKustomizeBase(o.out, files);
        const ctx = contextOf(cmd);
        if (o.json) printJson({ written });
        else for (const w of written) say(ctx, w);
        return;
      }
      if (o.json) {
        printJson({
          apiVersion: "v1",
          kind: "List",
          items: files.flatMap((f) => f.objects.map(cleanObject)),
        });
        return;
      }
      process.stdout.write(files.map((f) => renderYaml(f.objects, f.about)).join("---\n"));
    });
}
