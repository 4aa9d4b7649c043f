// NodeAgents through the fleet server's operator API (docs/fleet.md): nodes found by hostname (or by
// the id a Node's berth.dev/fleet-node-id annotation names), work given as jobs, every response
// checked against the server's own TypeBox schemas before it is believed.

import type { TSchema } from "typebox";
import Value from "typebox/value";
import { BerthError } from "../common/errors.ts";
import { BERTH_VERSION } from "../common/version.ts";
import { CreateJobResponse, type Node as FleetNode, Job, Node, NodePage } from "../server/api-schemas.ts";
import type { AgentView, JobView, NodeAgents, NodeIdentity, Work } from "./agents.ts";

export interface FleetOptions {
  /** The fleet server, e.g. https://fleet.example:8443 */
  server: string;
  /** An API token (berth server init, or POST /api/v1/tokens kind api). */
  token: string;
  timeoutMs?: number;
}

export function agentView(n: FleetNode): AgentView {
  return {
    id: n.id,
    hostname: n.hostname,
    online: n.online,
    release: n.release,
    updateState: n.update.state,
    reason: n.update.reason,
    lastAttempt: n.update.lastAttempt,
    patches: n.patches.map((p) => p.name),
    harden: n.harden,
  };
}

export class FleetAgents implements NodeAgents {
  /** Requests made, by "METHOD path-pattern", for the operator's statistics. */
  readonly counts = new Map<string, number>();
  private readonly base: string;
  private readonly o: FleetOptions;

  constructor(o: FleetOptions) {
    this.o = o;
    this.base = o.server.replace(/\/+$/, "");
  }

  private async call<T extends TSchema>(
    method: string,
    path: string,
    schema: T,
    body?: unknown,
  ): Promise<unknown> {
    const key = `${method} ${path.replace(/\?.*$/, "").replace(/\/[A-Za-z0-9_-]{8,}(?=\/|$)/g, "/:id")}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.o.token}`,
          "user-agent": `berth-operator/${BERTH_VERSION}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.o.timeoutMs ?? 15_000),
      });
    } catch (e) {
      throw new BerthError(`fleet server ${this.base}: ${(e as Error).message}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new BerthError(`fleet server ${method} ${path}: ${res.status}, not JSON`);
    }
    if (!res.ok) {
      const error = (json as { error?: unknown })?.error;
      throw new FleetError(
        res.status,
        `fleet server ${method} ${path}: ${res.status} ${typeof error === "string" ? error : ""}`.trim(),
      );
    }
    if (!Value.Check(schema, json)) {
      const first = [...Value.Errors(schema, json)][0];
      throw new BerthError(
        `fleet server ${method} ${path}: unexpected answer (${first?.instancePath} ${first?.message})`,
      );
    }
    return json;
  }

  async find(node: NodeIdentity): Promise<AgentView | undefined> {
    if (node.fleetId) {
      try {
        return await this.get(node.fleetId);
      } catch (e) {
        if (e instanceof FleetError && e.status === 404) return undefined;
        throw e;
      }
    }
    const page = (await this.call(
      "GET",
      `/api/v1/nodes?hostname=${encodeURIComponent(node.hostname)}&limit=100`,
      NodePage,
    )) as NodePage;
    // A host that enrolled again has a new id beside the old one: the one heard from last is the agent.
    const matching = page.nodes.filter((n) => n.hostname === node.hostname);
    matching.sort(
      (a, b) => Number(b.online) - Number(a.online) || (b.lastSeen ?? "").localeCompare(a.lastSeen ?? ""),
    );
    return matching[0] ? agentView(matching[0]) : undefined;
  }

  async get(id: string): Promise<AgentView> {
    return agentView((await this.call("GET", `/api/v1/nodes/${encodeURIComponent(id)}`, Node)) as FleetNode);
  }

  async start(id: string, work: Work): Promise<string> {
    const r = (await this.call(
      "POST",
      `/api/v1/nodes/${encodeURIComponent(id)}/jobs`,
      CreateJobResponse,
      work,
    )) as {
      id: string;
    };
    return r.id;
  }

  async job(id: string): Promise<JobView> {
    const j = (await this.call("GET", `/api/v1/jobs/${encodeURIComponent(id)}`, Job)) as Job;
    return { id: j.id, state: j.state, error: j.error, createdAt: j.createdAt };
  }
}

/** The fleet server answered with an error status. */
export class FleetError extends BerthError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}
