// `berth repo serve`: a small static file server for a repository's served tree, for tests and demos
// (any web server does the same job in production). GET and HEAD only; a path that is not plain
// segments, or that resolves (through symlinks too) outside the tree, is answered 400/404 and the
// server stays up. node:http is enough for this; no framework is needed.

import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, sep } from "node:path";
import { BerthError } from "../common/errors.ts";

export interface ServedRepository {
  url: string;
  server: Server;
  /** Requests served so far: method, path, status (tests and the demo read it). */
  log: { method: string; path: string; status: number }[];
  close(): Promise<void>;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._+~-]*$/;

/** The relative path of a request, or undefined when it is not made of plain segments. */
export function requestPath(rawUrl: string): string[] | undefined {
  const q = rawUrl.indexOf("?");
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  if (!path.startsWith("/") || path.length > 2048) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return undefined;
  }
  // Encoded separators and NULs are never part of a target name.
  if (/[\\\0]/.test(decoded)) return undefined;
  const segs = decoded.split("/").slice(1);
  if (segs.length === 0 || !segs.every((s) => SEGMENT.test(s))) return undefined;
  return segs;
}

async function answer(root: string, req: IncomingMessage, res: ServerResponse): Promise<number> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
    return 405;
  }
  const segs = requestPath(req.url ?? "");
  if (!segs) {
    res.writeHead(400, { "content-type": "text/plain" }).end("bad path\n");
    return 400;
  }
  let file: string;
  try {
    file = await realpath(join(root, ...segs));
  } catch {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return 404;
  }
  const st = await stat(file).catch(() => undefined);
  if (!file.startsWith(root + sep) || !st?.isFile()) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return 404;
  }
  res.writeHead(200, {
    "content-type": file.endsWith(".json") ? "application/json" : "application/octet-stream",
    "content-length": st.size,
    // Metadata other than timestamp.json and N.root.json never changes under its name.
    "cache-control": /\/(timestamp|root)\.json$/.test(file) ? "no-cache" : "max-age=300",
  });
  if (req.method === "HEAD") {
    res.end();
    return 200;
  }
  await new Promise<void>((resolve) => {
    const s = createReadStream(file);
    s.on("error", () => {
      res.destroy();
      resolve();
    });
    res.on("close", () => {
      s.destroy();
      resolve();
    });
    s.pipe(res);
  });
  return 200;
}

/** Serves `dir` (a served tree: metadata/ and targets/) on host:port; port 0 picks a free one. */
export async function serveRepository(dir: string, host = "127.0.0.1", port = 0): Promise<ServedRepository> {
  let root: string;
  try {
    root = await realpath(dir);
  } catch {
    throw new BerthError(`${dir} does not exist`);
  }
  const log: ServedRepository["log"] = [];
  const server = createServer((req, res) => {
    answer(root, req, res)
      .then((status) => log.push({ method: req.method ?? "", path: req.url ?? "", status }))
      .catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
  });
  // A client sending garbage gets 400 from node's parser and the server carries on.
  server.on("clientError", (_e, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(new BerthError(`cannot listen on ${host}:${port}: ${e.code ?? e.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}`,
    server,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
