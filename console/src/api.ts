// The console's calls to the fleet server: same origin, the session cookie, JSON. Types are the server's
// own (src/server/api-schemas.ts), so the console and the API cannot drift apart silently.

import type {
  FleetSettings,
  Job,
  NodeDetail,
  NodePage,
  Rollout,
  Whoami,
} from "../../src/server/api-schemas.ts";

export type { FleetSettings, Job, NodeDetail, NodePage, Rollout, Whoami };

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const value = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok)
    throw new ApiError(res.status, (value as { error?: string } | undefined)?.error ?? res.statusText);
  return value as T;
}

export const get = <T>(path: string) => call<T>("GET", path);
export const post = <T>(path: string, body: unknown = {}) => call<T>("POST", path, body);

export function qs(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

export interface FleetStatus {
  nodes: number;
  online: number;
  containers: number;
  advisoryDb: { generation: string; evaluatedAt: string | null; seconds: number | null };
  stopped: boolean;
}
export interface VulnHistory {
  points: {
    at: string;
    critical: number;
    high: number;
    medium: number;
    low: number;
    negligible: number;
    unknown: number;
  }[];
}
export interface TopVulns {
  vulns: { vulnId: string; severity: string; title?: string; hosts: number; fixable: boolean }[];
}
export interface Hardening {
  hosts: number;
  rules: { id: string; failing: number; passRate: number }[];
  history: { at: string; averageScore: number; hosts: number }[];
}
export interface Software {
  versions: { name: string; version: string; hosts: number }[];
}
export interface Advisories {
  advisories: { id: string; vulns: string[]; hosts: number; severity: string }[];
}
