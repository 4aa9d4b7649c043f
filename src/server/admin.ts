// Who may do what: enrolment tokens, API tokens, users with passwords, console sessions, and the audit
// log that records every change. Secrets are kept only as hashes; an expired or used-up token is refused
// exactly like an unknown one.

import { randomUUID } from "node:crypto";
import type { Role } from "./api-schemas.ts";
import type { FleetContext } from "./context.ts";
import { hashPassword, hashSecret, newSecret, type SecretKind, verifyPassword } from "./secrets.ts";
import type { Sql } from "./sql.ts";

export interface Actor {
  name: string;
  role: Role;
  via: "token" | "session";
}

export async function audit(
  ctx: FleetContext,
  sql: Sql,
  actor: string,
  action: string,
  target: string | null,
  detail: unknown = null,
): Promise<void> {
  await sql.run("INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)", [
    ctx.now(),
    actor,
    action,
    target,
    detail === null ? null : JSON.stringify(detail),
  ]);
}

export async function issueToken(
  ctx: FleetContext,
  sql: Sql,
  o: { kind: SecretKind; role?: Role; name: string; ttlSeconds?: number; uses?: number },
): Promise<{ token: string; expiresAt: number | null }> {
  const token = newSecret(o.kind);
  const expiresAt = o.ttlSeconds ? ctx.now() + o.ttlSeconds * 1000 : null;
  await sql.run(
    "INSERT INTO tokens (hash, kind, role, name, created_at, expires_at, uses_left) VALUES (?, ?, ?, ?, ?, ?, ?)",
    [hashSecret(token), o.kind, o.role ?? null, o.name, ctx.now(), expiresAt, o.uses ?? null],
  );
  return { token, expiresAt };
}

interface TokenRow {
  kind: string;
  role: string | null;
  name: string;
  expires_at: number | null;
  uses_left: number | null;
}

async function liveToken(ctx: FleetContext, sql: Sql, secret: string, kind: SecretKind) {
  if (secret.length > 256) return undefined;
  const row = await sql.get<TokenRow>(
    "SELECT kind, role, name, expires_at, uses_left FROM tokens WHERE hash = ? AND kind = ?",
    [hashSecret(secret), kind],
  );
  if (!row) return undefined;
  if (row.expires_at !== null && Number(row.expires_at) <= ctx.now()) return undefined;
  if (row.uses_left !== null && Number(row.uses_left) <= 0) return undefined;
  return row;
}

/** The actor behind an API token or a session id; undefined when it is unknown, expired or used up. */
export async function actorOf(
  ctx: FleetContext,
  secret: string,
  kind: "api" | "session",
): Promise<Actor | undefined> {
  const row = await liveToken(ctx, ctx.db, secret, kind);
  if (!row || (row.role !== "admin" && row.role !== "read-only")) return undefined;
  return { name: row.name, role: row.role, via: kind === "api" ? "token" : "session" };
}

/** Uses one enrolment of a token inside the enrolment's transaction; false when it cannot enrol. */
export async function spendEnrollToken(
  ctx: FleetContext,
  tx: Sql,
  secret: string,
): Promise<string | undefined> {
  const row = await liveToken(ctx, tx, secret, "enroll");
  if (!row) return undefined;
  if (row.uses_left !== null) {
    const n = await tx.run("UPDATE tokens SET uses_left = uses_left - 1 WHERE hash = ? AND uses_left > 0", [
      hashSecret(secret),
    ]);
    if (n !== 1) return undefined;
  }
  return row.name;
}

export async function createUser(sql: Sql, ctx: FleetContext, name: string, password: string, role: Role) {
  await sql.run(
    "INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
    [name, await hashPassword(password), role, ctx.now()],
  );
}

/** A session for a user whose password is right; undefined otherwise (same answer for no such user). */
export async function login(
  ctx: FleetContext,
  name: string,
  password: string,
): Promise<{ session: string; role: Role; expiresAt: number } | undefined> {
  const row = await ctx.db.get<{ password_hash: string; role: string }>(
    "SELECT password_hash, role FROM users WHERE name = ?",
    [name],
  );
  // Verify against a throwaway hash when there is no such user, so timing does not tell.
  const ok = await verifyPassword(password, row?.password_hash ?? DUMMY_HASH);
  if (!row || !ok) return undefined;
  const role = row.role as Role;
  const ttl = 12 * 3600;
  const { token, expiresAt } = await issueToken(ctx, ctx.db, {
    kind: "session",
    role,
    name,
    ttlSeconds: ttl,
  });
  return { session: token, role, expiresAt: expiresAt! };
}

const DUMMY_HASH = `scrypt$32768$8$1$${Buffer.alloc(16).toString("base64")}$${Buffer.alloc(32).toString("base64")}`;

export async function logout(ctx: FleetContext, session: string): Promise<void> {
  await ctx.db.run("DELETE FROM tokens WHERE hash = ? AND kind = 'session'", [hashSecret(session)]);
}

/** Removes expired tokens and sessions (run now and then). */
export async function pruneTokens(ctx: FleetContext): Promise<number> {
  return ctx.db.run("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < ?", [ctx.now()]);
}

/** `berth server init`: the first admin API token, once. */
export async function initFleet(
  ctx: FleetContext,
  o: { again?: boolean } = {},
): Promise<{ token: string; created: boolean }> {
  return ctx.db.tx(async (tx) => {
    const done = await tx.get<{ value: string }>("SELECT value FROM meta WHERE key = 'initialised'");
    if (done && !o.again) return { token: "", created: false };
    await tx.run(
      "INSERT INTO meta (key, value) VALUES ('initialised', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [new Date(ctx.now()).toISOString()],
    );
    await tx.run("INSERT INTO meta (key, value) VALUES ('fleet_id', ?) ON CONFLICT (key) DO NOTHING", [
      randomUUID(),
    ]);
    const { token } = await issueToken(ctx, tx, { kind: "api", role: "admin", name: "admin" });
    await audit(ctx, tx, "berth server init", "token.create", "admin", { kind: "api", role: "admin" });
    return { token, created: true };
  });
}
