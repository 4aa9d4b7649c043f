// HTTP GET with retries and timeouts; file:// URLs are read directly so a local mirror copy works too.

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { BerthError } from "./errors.ts";

export interface FetchedBody {
  stream: Readable;
  /** Content-Length when the server sent one. */
  length?: number;
  etag?: string;
  lastModified?: string;
  notModified: boolean;
}

export interface GetOptions {
  etag?: string;
  lastModified?: string;
  retries?: number;
  timeoutMs?: number;
}

export class HttpNotFound extends BerthError {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function httpGet(url: string, o: GetOptions = {}): Promise<FetchedBody> {
  if (url.startsWith("file://")) {
    const path = fileURLToPath(url);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) throw new HttpNotFound(`not found: ${url}`);
    return { stream: createReadStream(path), length: st.size, notModified: false };
  }
  const retries = o.retries ?? 3;
  let lastError: unknown;
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt) await sleep(250 * 2 ** attempt);
    const headers: Record<string, string> = { "user-agent": "berth/0.1" };
    if (o.etag) headers["if-none-match"] = o.etag;
    if (o.lastModified) headers["if-modified-since"] = o.lastModified;
    let res: Response;
    try {
      // The timeout covers connecting and the headers; a large body may take longer.
      res = await fetch(url, { headers, signal: AbortSignal.timeout(o.timeoutMs ?? 60_000) });
    } catch (e) {
      lastError = e;
      continue;
    }
    if (res.status === 304) return { stream: Readable.from([]), notModified: true };
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel();
      throw new HttpNotFound(`not found (HTTP ${res.status}): ${url}`);
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      lastError = new BerthError(`HTTP ${res.status} from ${url}`);
      if (res.status >= 500 || res.status === 429) continue;
      throw lastError;
    }
    const len = res.headers.get("content-length");
    return {
      stream: Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>),
      length: len ? Number(len) : undefined,
      etag: res.headers.get("etag") ?? undefined,
      lastModified: res.headers.get("last-modified") ?? undefined,
      notModified: false,
    };
  }
  const msg =
    lastError instanceof Error
      ? ((lastError.cause as Error | undefined)?.message ?? lastError.message)
      : String(lastError);
  throw new BerthError(`cannot fetch ${url}: ${msg}`);
}

export async function httpGetBuffer(url: string, o: GetOptions = {}): Promise<Buffer> {
  const r = await httpGet(url, o);
  const chunks: Buffer[] = [];
  for await (const c of r.stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
