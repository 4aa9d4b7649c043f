// The transport under tuf-js's Updater: http(s) through fetch and file: URLs (a repository directory on
// disk), with a stall timeout, a hard stop (and a cancelled connection) at the length the metadata
// allows, byte counts for progress, and a log of every request (the benchmark and the tests read it).
// tuf-js enforces lengths and hashes itself; this class only moves bytes and records what it moved.

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { BaseFetcher } from "tuf-js";
import { DownloadHTTPError, DownloadLengthMismatchError } from "tuf-js/dist/error.js";
import { BERTH_VERSION } from "../common/version.ts";

export interface FetchRecord {
  url: string;
  /** HTTP status (200 for a file that was read, 404 for one that is missing); 0 when nothing answered. */
  status: number;
  bytes: number;
  maxLength: number;
  /** Why nothing (or not everything) arrived: a connection error code, or a stall. */
  error?: string;
}

/** What a request under `metadataBase` was for: a role's metadata; anything else is a target. */
export function roleOfUrl(url: string, metadataBase: string): string {
  const base = metadataBase.endsWith("/") ? metadataBase : `${metadataBase}/`;
  if (!url.startsWith(base)) return "target";
  const m = /^(?:\d+\.)?(root|timestamp|snapshot|targets)\.json$/.exec(
    decodeURIComponent(url.slice(base.length)),
  );
  return m ? m[1]! : "target";
}

export class RepoFetcher extends BaseFetcher {
  readonly log: FetchRecord[] = [];
  /** Called with the running byte count of the current download. */
  onBytes?: (bytes: number) => void;
  /** A request that delivers nothing for this long is aborted. */
  readonly stallMs: number;
  private maxLength = Number.POSITIVE_INFINITY;

  constructor(o: { stallMs?: number } = {}) {
    super();
    this.stallMs = o.stallMs ?? 30_000;
  }

  get last(): FetchRecord | undefined {
    return this.log.at(-1);
  }

  override downloadFile<T>(
    url: string,
    maxLength: number,
    handler: (file: string) => Promise<T>,
  ): Promise<T> {
    this.maxLength = maxLength;
    return super.downloadFile(url, maxLength, handler);
  }

  override async fetch(url: string): Promise<ReadableStream<Uint8Array<ArrayBuffer>>> {
    const rec: FetchRecord = { url, status: 0, bytes: 0, maxLength: this.maxLength };
    this.log.push(rec);
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        rec.error = `no data for ${this.stallMs / 1000} s`;
        abort.abort(new Error(rec.error));
      }, this.stallMs);
      timer.unref();
    };
    arm();
    let body: ReadableStream<Uint8Array>;
    try {
      if (url.startsWith("file:")) body = await this.openFile(url, rec);
      else {
        const res = await fetch(url, {
          headers: { "user-agent": `berth/${BERTH_VERSION}` },
          signal: abort.signal,
        });
        rec.status = res.status;
        if (!res.ok || !res.body) {
          await res.body?.cancel();
          throw new DownloadHTTPError(`HTTP ${res.status}`, res.status);
        }
        body = res.body;
      }
    } catch (e) {
      clearTimeout(timer);
      if (!(e instanceof DownloadHTTPError))
        rec.error =
          (e as { cause?: { code?: string } }).cause?.code ??
          (abort.signal.aborted ? String(abort.signal.reason?.message ?? "aborted") : (e as Error).message);
      throw e;
    }
    const onBytes = this.onBytes;
    const max = rec.maxLength;
    return body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array<ArrayBuffer>>({
        transform(chunk, ctl) {
          arm();
          rec.bytes += chunk.length;
          // Stop reading (and cancel the connection) as soon as the allowance is exceeded: an endless
          // response costs at most one chunk more than the metadata allows.
          if (rec.bytes > max) {
            clearTimeout(timer);
            ctl.error(new DownloadLengthMismatchError("Max length reached"));
            return;
          }
          onBytes?.(rec.bytes);
          ctl.enqueue(chunk as Uint8Array<ArrayBuffer>);
        },
        flush() {
          clearTimeout(timer);
        },
      }),
      { signal: abort.signal },
    );
  }

  private async openFile(url: string, rec: FetchRecord): Promise<ReadableStream<Uint8Array>> {
    const path = fileURLToPath(url);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) {
      rec.status = 404;
      throw new DownloadHTTPError("not found", 404);
    }
    rec.status = 200;
    return Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>;
  }
}
