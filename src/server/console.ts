// Serves the built web console (console/dist, made by `npm run build`) with a strict
// Content-Security-Policy: only the server's own scripts, styles and API; no inline code, no frames.

import { existsSync } from "node:fs";
import { join } from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join("; ");

export async function serveConsole(app: FastifyInstance, dir: string): Promise<void> {
  if (!existsSync(join(dir, "index.html"))) return;
  await app.register(fastifyStatic, {
    root: dir,
    prefix: "/",
    index: ["index.html"],
    wildcard: true,
    setHeaders: (res, path) => {
      res.header("content-security-policy", CONSOLE_CSP);
      res.header("x-frame-options", "DENY");
      // Hashed asset names never change; the page itself is always fetched again.
      res.header(
        "cache-control",
        path.includes("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
      );
    },
  });
}
