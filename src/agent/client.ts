// The agent's side of the fleet API: enrolment, and requests signed with the node key (docs/fleet.md).

import type { KeyObject } from "node:crypto";
import { BerthError } from "../common/errors.ts";
import type { EnrollResponse } from "../server/api-schemas.ts";
import {
  enrollProofText,
  NODE_HEADER,
  requestText,
  SIGNATURE_HEADER,
  sha256Hex,
  signText,
  TIME_HEADER,
} from "../server/signature.ts";

export interface Answer<T> {
  status: number;
  body: T;
}

/** A server that cannot be reached or answers 5xx: try again later. */
export class Unreachable extends BerthError {}

async function send<T>(url: string, init: RequestInit, timeoutMs: number): Promise<Answer<T>> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    throw new Unreachable(
      `cannot reach ${new URL(url).origin}: ${(e as Error).cause ?? (e as Error).message}`,
    );
  }
  const text = await res.text().catch(() => "");
  if (res.status >= 500) throw new Unreachable(`${new URL(url).origin} answered ${res.status}`);
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new Unreachable(`${new URL(url).origin} answered ${res.status} with something that is not JSON`);
  }
  return { status: res.status, body: body as T };
}

export async function enroll(
  server: string,
  o: {
    token: string;
    publicKey: string;
    hostname: string;
    key: KeyObject;
    machineId?: string;
    agentVersion?: string;
  },
  timeoutMs = 30_000,
): Promise<EnrollResponse> {
  const body = {
    token: o.token,
    publicKey: o.publicKey,
    hostname: o.hostname,
    proof: signText(o.key, enrollProofText(o.token, o.publicKey, o.hostname)),
    ...(o.machineId ? { machineId: o.machineId } : {}),
    ...(o.agentVersion ? { agentVersion: o.agentVersion } : {}),
  };
  const r = await send<EnrollResponse & { error?: string }>(
    `${server.replace(/\/+$/, "")}/api/v1/enroll`,
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) },
    timeoutMs,
  );
  if (r.status !== 201)
    throw new BerthError(`enrolment refused (${r.status}): ${r.body?.error ?? "no reason given"}`);
  return r.body;
}

export class FleetClient {
  readonly server: string;
  readonly nodeId: string;
  private readonly key: KeyObject;
  private lastTime = 0;
  timeoutMs = 60_000;

  constructor(server: string, nodeId: string, key: KeyObject) {
    this.server = server.replace(/\/+$/, "");
    this.nodeId = nodeId;
    this.key = key;
  }

  /** The same node talking to another server process (behind a load balancer), times still increasing. */
  via(server: string): FleetClient {
    const c = new FleetClient(server, this.nodeId, this.key);
    c.lastTime = this.lastTime;
    c.timeoutMs = this.timeoutMs;
    return c;
  }

  /** Milliseconds, strictly increasing for this client (the server refuses a time it has seen). */
  private nextTime(): string {
    this.lastTime = Math.max(Date.now(), this.lastTime + 1);
    return String(this.lastTime);
  }

  /** Headers that sign one request. */
  sign(method: string, pathWithQuery: string, body: string): Record<string, string> {
    const time = this.nextTime();
    return {
      [NODE_HEADER]: this.nodeId,
      [TIME_HEADER]: time,
      [SIGNATURE_HEADER]: signText(this.key, requestText(method, pathWithQuery, time, sha256Hex(body))),
    };
  }

  request<T>(method: "GET" | "POST", pathWithQuery: string, body?: unknown): Promise<Answer<T>> {
    const text = body === undefined ? "" : JSON.stringify(body);
    const headers: Record<string, string> = this.sign(method, pathWithQuery, text);
    if (body !== undefined) headers["content-type"] = "application/json";
    return send<T>(
      `${this.server}${pathWithQuery}`,
      { method, headers, ...(body !== undefined ? { body: text } : {}) },
      this.timeoutMs,
    );
  }
}
