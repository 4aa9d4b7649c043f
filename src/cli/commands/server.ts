// `berth server`: the fleet server (--listen), and its administration from the command line: init
// (schema and the first admin API token), token create (enrolment or API tokens), user add.

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { defaultDbPath } from "../../db/database.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";

// The server's modules (fastify, pg) load only when a server command runs, not for every berth command.
const serverModules = async () => ({
  ...(await import("../../server/admin.ts")),
  ...(await import("../../server/server.ts")),
  ...(await import("../../server/sql.ts")),
});

export const DEFAULT_FLEET_DB = "sqlite:/var/lib/berth/fleet.sqlite";

/** "90", "90s", "30m", "1h", "2d" -> seconds. */
export function parseDuration(v: string): number {
  const m = /^(\d+)\s*([smhd]?)$/.exec(v.trim());
  if (!m || Number(m[1]) <= 0)
    throw new UsageError(`a duration is a number with s, m, h or d, e.g. 1h, not "${v}"`);
  return Number(m[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as "" | "s" | "m" | "h" | "d"];
}

const positive = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new UsageError(`${name} wants a positive whole number, not "${v}"`);
  return n;
};

/** --db is an option of `berth server`, given before or after the subcommand's name. */
const dbOf = (cmd: Command): string => (cmd.optsWithGlobals() as { db: string }).db;

interface ServeFlags {
  listen: string;
  db: string;
  advisoryDb: string;
  interval: number;
  console?: string;
  repositoryUrl?: string;
  repository?: string;
  tick: number;
}

export function registerServerCommands(program: Command): void {
  const server = program
    .command("server")
    .description(
      "the fleet server: API, console, rollouts (berth server --listen ADDR), and its administration",
    )
    .option("--listen <addr>", "HOST:PORT to serve on", "127.0.0.1:8443")
    .option("--db <url>", "sqlite:PATH or postgres://USER:PASSWORD@HOST/DB", DEFAULT_FLEET_DB)
    .option("--advisory-db <path>", "the advisory database nodes are matched against", defaultDbPath())
    .option("--interval <seconds>", "how often agents report", positive("--interval"), 60)
    .option("--console <dir>", "the built console to serve (default: console/dist)")
    .option("--repository <dir>", "serve this update repository (berth repo's repository/ tree) at /repo/")
    .option("--repository-url <url>", "where nodes find the update repository, when it is served elsewhere")
    .option(
      "--tick <ms>",
      "milliseconds between background rounds (rollouts, re-evaluation)",
      positive("--tick"),
      2000,
    )
    .addHelpText(
      "after",
      `
Examples:
  berth server init --db sqlite:/var/lib/berth/fleet.sqlite      prints the admin API token once
  berth server token create --db sqlite:/var/lib/berth/fleet.sqlite --ttl 1h
  berth server --listen 0.0.0.0:8443 --db sqlite:/var/lib/berth/fleet.sqlite
  berth server --listen 0.0.0.0:8443 --db postgres://berth:secret@db/fleet   (any number of these)`,
    )
    .action(async (o: ServeFlags, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { startServer, redact } = await serverModules();
      const s = await startServer({
        db: o.db,
        listen: o.listen,
        advisoryDb: o.advisoryDb,
        interval: o.interval,
        consoleDir: o.console,
        repositoryUrl: o.repositoryUrl,
        repositoryDir: o.repository,
        tickMs: o.tick,
        logger: !ctx.quiet,
      });
      if (!ctx.quiet) process.stderr.write(`berth server: listening on ${s.url} (${redact(o.db)})\n`);
      await new Promise<void>((res) => {
        const stop = () => res();
        process.once("SIGTERM", stop);
        process.once("SIGINT", stop);
      });
      await s.close();
    });

  server
    .command("init")
    .description("create or migrate the fleet database and print the first admin API token (once)")
    .option("--new-token", "print a new admin token even if the fleet was initialised before")
    .option("--json", "JSON output")
    .action(async (flags: { newToken?: boolean; json?: boolean }, cmd: Command) => {
      const o = { ...flags, db: dbOf(cmd) };
      const { openFleet, initFleet, redact } = await serverModules();
      const fleet = await openFleet(o.db);
      try {
        const r = await initFleet(fleet, { again: o.newToken });
        if (!r.created)
          throw new BerthError(
            `the fleet at ${redact(o.db)} is already initialised (--new-token for another admin token)`,
          );
        if (o.json) printJson({ db: redact(o.db), adminToken: r.token });
        else {
          say(contextOf(cmd), `fleet database ready at ${redact(o.db)}`);
          process.stdout.write(`admin API token (shown once): ${r.token}\n`);
        }
      } finally {
        await fleet.db.close();
      }
    });

  server
    .command("token")
    .description("tokens: enrolment tokens for agents, API tokens for people and programs")
    .command("create")
    .description("print a new token (enrolment by default; --api for an API token)")
    .option(
      "--ttl <duration>",
      "lifetime, e.g. 1h, 30m, 7d (enrolment default 1h; API tokens never expire unless set)",
    )
    .option("--uses <n>", "enrolments allowed with this token", positive("--uses"))
    .option("--api", "an API token instead of an enrolment token")
    .option("--role <role>", "API token role: admin or read-only", "read-only")
    .option("--name <name>", "what the token is for (shown in the audit log)")
    .option("--json", "JSON output")
    .action(
      async (
        flags: { ttl?: string; uses?: number; api?: boolean; role: string; name?: string; json?: boolean },
        cmd: Command,
      ) => {
        const o = { ...flags, db: dbOf(cmd) };
        if (o.role !== "admin" && o.role !== "read-only")
          throw new UsageError(`--role is admin or read-only, not "${o.role}"`);
        const ttl = o.ttl ? parseDuration(o.ttl) : o.api ? undefined : 3600;
        const { openFleet, issueToken, audit } = await serverModules();
        const fleet = await openFleet(o.db);
        try {
          const kind = o.api ? "api" : "enroll";
          const name = o.name ?? (o.api ? `api-${o.role}` : "enrolment");
          const t = await issueToken(fleet, fleet.db, {
            kind,
            role: o.api ? (o.role as "admin" | "read-only") : undefined,
            name,
            ttlSeconds: ttl,
            uses: o.uses,
          });
          await audit(fleet, fleet.db, "berth server token create", "token.create", name, {
            kind,
            role: o.api ? o.role : undefined,
            ttl,
            uses: o.uses,
          });
          const expiresAt = t.expiresAt === null ? null : new Date(t.expiresAt).toISOString();
          if (o.json) printJson({ token: t.token, kind, expiresAt });
          else process.stdout.write(`${t.token}\n`);
        } finally {
          await fleet.db.close();
        }
      },
    );

  server
    .command("user")
    .description("console users")
    .command("add")
    .description("add a user (or set an existing user's password and role); the password is read from stdin")
    .argument("<name>", "login name")
    .option("--role <role>", "admin or read-only", "read-only")
    .action(async (name: string, flags: { role: string }, cmd: Command) => {
      const o = { ...flags, db: dbOf(cmd) };
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(name))
        throw new UsageError(`"${name}" is not a user name (letters, digits, . _ -)`);
      if (o.role !== "admin" && o.role !== "read-only")
        throw new UsageError(`--role is admin or read-only, not "${o.role}"`);
      const password = readFileSync(0, "utf8").replace(/\r?\n$/, "");
      if (password.length < 8) throw new UsageError("the password (on stdin) needs at least 8 characters");
      const { openFleet, createUser, audit } = await serverModules();
      const fleet = await openFleet(o.db);
      try {
        await createUser(fleet.db, fleet, name, password, o.role);
        await audit(fleet, fleet.db, "berth server user add", "user.create", name, { role: o.role });
        say(contextOf(cmd), `user ${name} (${o.role}) saved`);
      } finally {
        await fleet.db.close();
      }
    });
}
