// The operator's connection to a cluster, through @kubernetes/client-node: a kubeconfig (a file, or
// the in-cluster service account), the typed API clients it uses, a count of every request it makes
// (watches are not requests to it: they go through Watch, not the API clients), and discovery of the
// Eviction API version the server speaks, as `kubectl drain` does.

import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  createConfiguration,
  type Informer,
  KubeConfig,
  type KubernetesObject,
  type ListPromise,
  makeInformer,
  type ObjectCache,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { BerthError } from "../common/errors.ts";
import { BERTH_VERSION } from "../common/version.ts";

export interface KubeOptions {
  /** A kubeconfig file; without it $KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
  kubeconfig?: string;
  context?: string;
}

/** Per-call options that send a body as a JSON merge patch (client-node defaults to JSON patch). */
export const MERGE_PATCH = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/** Requests by "VERB resource" (e.g. "PATCH nodes", "POST pods/eviction"), watches excluded. */
export type RequestCounts = Map<string, number>;

/** "PATCH /api/v1/nodes/n1" -> "PATCH nodes"; sub-resources keep their name ("pods/eviction"). */
export function requestKind(method: string, url: string): string {
  const path = new URL(url).pathname.split("/").filter(Boolean);
  // /api/v1/... or /apis/GROUP/VERSION/...
  const rest = path[0] === "api" ? path.slice(2) : path.slice(3);
  if (rest[0] === "namespaces" && rest.length > 2) rest.splice(0, 2);
  const [resource, , sub] = rest;
  if (!resource) return `${method} discovery`;
  const verb = method === "GET" && rest.length === 1 ? "LIST" : method;
  return `${verb} ${resource}${sub ? `/${sub}` : ""}`;
}

/** A watch-backed cache of one kind of object. */
export type Cache<T extends KubernetesObject> = Informer<T> & ObjectCache<T> & { stopped: () => boolean };

export class Kube {
  readonly kc: KubeConfig;
  readonly core: CoreV1Api;
  readonly coordination: CoordinationV1Api;
  readonly custom: CustomObjectsApi;
  readonly counts: RequestCounts = new Map();
  /** "v1" or "v1beta1": the policy version of the pods/eviction sub-resource (see discover()). */
  evictionVersion = "v1";

  constructor(o: KubeOptions = {}) {
    this.kc = new KubeConfig();
    try {
      if (o.kubeconfig) this.kc.loadFromFile(o.kubeconfig);
      else this.kc.loadFromDefault();
      if (o.context) this.kc.setCurrentContext(o.context);
    } catch (e) {
      throw new BerthError(
        `cannot load the kubeconfig${o.kubeconfig ? ` ${o.kubeconfig}` : ""}: ${(e as Error).message}`,
      );
    }
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new BerthError("the kubeconfig names no cluster (and this is not a pod in one)");
    const counts = this.counts;
    const config = createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: this.kc },
      promiseMiddleware: [
        {
          pre: async (ctx: RequestContext) => {
            ctx.setHeaderParam("User-Agent", `berth-operator/${BERTH_VERSION}`);
            const kind = requestKind(ctx.getHttpMethod(), ctx.getUrl());
            counts.set(kind, (counts.get(kind) ?? 0) + 1);
            return ctx;
          },
          post: async (r: ResponseContext) => r,
        },
      ],
    });
    this.core = new CoreV1Api(config);
    this.coordination = new CoordinationV1Api(config);
    this.custom = new CustomObjectsApi(config);
  }

  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? "";
  }

  /** Total requests made so far (watches excluded). */
  requests(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }

  /**
   * Which Eviction the server takes: the group version the core API lists for pods/eviction
   * (policy/v1 from Kubernetes 1.22, policy/v1beta1 before), the way kubectl drain decides.
   */
  async discover(): Promise<void> {
    const resources = await this.core.getAPIResources();
    const eviction = resources.resources.find((r) => r.name === "pods/eviction");
    if (!eviction) throw new BerthError(`the API server at ${this.server} has no Eviction API`);
    this.evictionVersion = eviction.group === "policy" && eviction.version ? eviction.version : "v1beta1";
  }

  /**
   * A watch-backed cache of one kind. An informer that errors stops (client-node leaves restarting to
   * the caller): it is restarted after a pause until stopped.
   */
  informer<T extends KubernetesObject>(path: string, list: ListPromise<T>, labelSelector?: string): Cache<T> {
    const inf = makeInformer(this.kc, path, list, labelSelector);
    let stopped = false;
    inf.on("error", () => {
      if (!stopped)
        setTimeout(() => {
          if (!stopped) inf.start().catch(() => {});
        }, 1000).unref();
    });
    const stop = inf.stop.bind(inf);
    return Object.assign(inf, {
      stop: async () => {
        stopped = true;
        await stop();
      },
      stopped: () => stopped,
    });
  }
}

/** The HTTP status of a failed client-node call (0 when it never reached the server). */
export function statusCode(e: unknown): number {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "number" ? code : 0;
}

/** The Kubernetes Status object of a failed call, when its body is one. */
export function statusBody(e: unknown): {
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
} {
  const body = (e as { body?: unknown })?.body;
  if (typeof body === "string")
    try {
      return JSON.parse(body);
    } catch {
      return { message: body };
    }
  return (body as object) ?? {};
}

/** One line for a failed call: the server's message when there is one. */
export function kubeError(e: unknown): string {
  const code = statusCode(e);
  if (!code) return (e as Error)?.message?.split("\n")[0] ?? String(e);
  return `${code} ${statusBody(e).message ?? "error"}`;
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits (client-node writes three). */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** A time from an object, whether the client deserialized it (Date) or a watch event carried it (string). */
export function timeOf(v: unknown): Date | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  const d = v instanceof Date ? v : new Date(String(v));
  return Number.isNaN(d.getTime()) ? undefined : d;
}
