// A running fleet server: the database (migrated), the advisory matcher, the HTTP API, and the background
// work every process does under database leases: re-evaluating the fleet when the advisory data changes,
// moving rollouts forward, recording history, pruning expired tokens.

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { UsageError } from "../common/errors.ts";
import { defaultDbPath } from "../db/database.ts";
import { pruneTokens } from "./admin.ts";
import { buildApp } from "./app.ts";
import { type FleetContext, newContext, parseJson } from "./context.ts";
import { type Reevaluation, reevaluate } from "./findings.ts";
import { recordHistory } from "./fleet-views.ts";
import { Matcher } from "./matcher.ts";
import { migrate } from "./migrations.ts";
import { releaseLease, takeLease, tickRollouts } from "./rollouts.ts";
import { type Database, openDatabase } from "./sql.ts";

export const DEFAULT_CONSOLE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../console/dist");

export interface ServerOptions {
  db: string;
  listen: string;
  advisoryDb?: string;
  interval?: number;
  consoleDir?: string;
  repositoryUrl?: string;
  repositoryDir?: string;
  /** Milliseconds between background ticks. */
  tickMs?: number;
  onReevaluated?: (r: Reevaluation) => void;
  logger?: boolean;
}

export interface RunningServer {
  url: string;
  ctx: FleetContext;
  app: FastifyInstance;
  /** Runs one background tick now (tests and benchmarks). */
  tick(): Promise<void>;
  close(): Promise<void>;
}

/** "HOST:PORT", "[v6]:PORT", ":PORT" or "PORT". */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(listen) ?? /^()()(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new UsageError(`--listen wants HOST:PORT, not "${listen}"`);
  return { host: m[1] || m[2] || "127.0.0.1", port };
}

export async function openFleet(
  dbUrl: string,
  advisoryDb = defaultDbPath(),
  interval = 60,
): Promise<FleetContext> {
  const db: Database = await openDatabase(dbUrl);
  try {
    await migrate(db);
  } catch (e) {
    await db.close();
    throw e;
  }
  return newContext(db, new Matcher(advisoryDb), interval);
}

async function backgroundTick(
  ctx: FleetContext,
  o: ServerOptions,
  state: { lastPrune: number },
): Promise<void> {
  ctx.matcher.refresh();
  const gen = ctx.matcher.generation;
  const evaluated = parseJson<{ generation: string } | null>(
    (await ctx.db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'evaluated'"))?.value,
    null,
  );
  const straggler =
    evaluated?.generation !== gen ||
    (await ctx.db.get("SELECT 1 AS x FROM pkgs WHERE evaluated <> ? LIMIT 1", [gen])) !== undefined ||
    (await ctx.db.get("SELECT 1 AS x FROM kernels WHERE evaluated <> ? LIMIT 1", [gen])) !== undefined;
  if (straggler && (await takeLease(ctx, "evaluate", 600_000))) {
    try {
      const r = await reevaluate(ctx);
      if (r) {
        await recordHistory(ctx);
        o.onReevaluated?.(r);
      } else if (evaluated?.generation !== gen)
        await ctx.db.run(
          "INSERT INTO meta (key, value) VALUES ('evaluated', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
          [JSON.stringify({ generation: gen, at: ctx.now() })],
        );
    } finally {
      await releaseLease(ctx, "evaluate");
    }
  }
  await tickRollouts(ctx);
  // An hourly point in the histories even when nothing was re-evaluated.
  const last = await ctx.db.get<{ at: number | null }>("SELECT max(at) AS at FROM vuln_history");
  if ((last?.at ?? 0) < ctx.now() - 3_600_000 && (await takeLease(ctx, "history", 60_000)))
    await recordHistory(ctx);
  if (state.lastPrune < ctx.now() - 600_000) {
    state.lastPrune = ctx.now();
    await pruneTokens(ctx);
  }
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const { host, port } = parseListen(o.listen);
  if (o.repositoryDir && !existsSync(join(o.repositoryDir, "metadata")))
    throw new UsageError(
      `--repository wants a repository tree (with metadata/), and ${o.repositoryDir} is not one`,
    );
  const ctx = await openFleet(o.db, o.advisoryDb, o.interval ?? 60);
  const consoleDir = o.consoleDir ?? DEFAULT_CONSOLE_DIR;
  const app = await buildApp(ctx, {
    consoleDir: existsSync(join(consoleDir, "index.html")) ? consoleDir : undefined,
    repositoryUrl: o.repositoryUrl,
    repositoryDir: o.repositoryDir,
    logger: o.logger,
  });
  try {
    await app.listen({ host, port });
  } catch (e) {
    await app.close();
    await ctx.db.close();
    throw e;
  }
  const addr = app.server.address();
  const bound = typeof addr === "object" && addr ? addr.port : port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${bound}`;

  const state = { lastPrune: 0 };
  let running: Promise<void> | undefined;
  let closed = false;
  const tick = async () => {
    if (running) return running;
    running = backgroundTick(ctx, o, state)
      .catch((e: unknown) => {
        if (!closed) app.log.error(e);
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void tick(), o.tickMs ?? 2000);
  timer.unref();
  void tick();

  return {
    url,
    ctx,
    app,
    tick,
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
      await app.close();
      ctx.matcher.close();
      await ctx.db.close();
    },
  };
}
