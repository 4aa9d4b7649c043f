// A small client of the fleet server's administrator API (bearer token), for `berth fleet`, tests and
// benchmarks. Errors are one line: the server's own message and status.

import { BerthError } from "../common/errors.ts";

export class ApiError extends BerthError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export class ApiClient {
  readonly server: string;
  private readonly token: string;
  constructor(server: string, token: string) {
    this.server = server.replace(/\/+$/, "");
    this.token = token;
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.server}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(120_000),
      });
    } catch (e) {
      throw new BerthError(`cannot reach ${this.server}: ${(e as Error).cause ?? (e as Error).message}`);
    }
    const text = await res.text();
    let value: unknown;
    try {
      value = text ? JSON.parse(text) : undefined;
    } catch {
      throw new ApiError(res.status, `${this.server} answered ${res.status} with something that is not JSON`);
    }
    if (!res.ok)
      throw new ApiError(
        res.status,
        `${method} ${path}: ${(value as { error?: string })?.error ?? res.statusText} (${res.status})`,
      );
    return value as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }
  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>("POST", path, body);
  }
}

/** A query string from defined values. */
export function query(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}
