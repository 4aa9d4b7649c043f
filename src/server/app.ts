// The fleet server's HTTP API on fastify: every route with TypeBox schemas (validated, and listed in the
// generated OpenAPI document), agent routes authenticated by the node's signature, administrator routes
// by API token or session cookie with roles, every change written to the audit log. Bad requests get a
// 4xx with one line of JSON; nothing a client sends can take the process down.

import { randomUUID } from "node:crypto";
import cookie from "@fastify/cookie";
import fastifyStatic from "@fastify/static";
import swagger from "@fastify/swagger";
import { type TypeBoxTypeProvider, TypeBoxValidatorCompiler } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import Type from "typebox";
import {
  type Actor,
  actorOf,
  audit,
  createUser,
  issueToken,
  login,
  logout,
  spendEnrollToken,
} from "./admin.ts";
import * as S from "./api-schemas.ts";
import { serveConsole } from "./console.ts";
import type { FleetContext } from "./context.ts";
import { advisories, fleetStatus, hardening, software, topVulns, vulnHistory } from "./fleet-views.ts";
import { createJob, getJob, listJobs, takeJobsForNode, updateJobFromAgent } from "./jobs.ts";
import { getNode, listNodes, nodeDetail, QueryError } from "./nodes.ts";
import { applyReport, checkReport, ReportError } from "./reports.ts";
import { createRollout, getRollout, listRollouts, setRolloutState } from "./rollouts.ts";
import {
  enrollProofText,
  MAX_SKEW_MS,
  NODE_HEADER,
  publicKeyFromRaw,
  requestText,
  SIGNATURE_HEADER,
  sha256Hex,
  TIME_HEADER,
  verifyText,
} from "./signature.ts";
import type { Sql } from "./sql.ts";

declare module "fastify" {
  interface FastifyRequest {
    rawBody?: Buffer;
    node?: { nid: number; id: string; time: number };
    actor?: Actor;
  }
}

export interface AppOptions {
  /** Directory of the built console (console/dist); not served when absent. */
  consoleDir?: string;
  /** Where nodes find the update repository (told to agents in their config). */
  repositoryUrl?: string;
  /** A repository tree (berth repo's repository/ directory) to serve at /repo/ for the nodes. */
  repositoryDir?: string;
  logger?: boolean;
}

export const SESSION_COOKIE = "berth_session";
const REPORT_LIMIT = 8 * 1024 * 1024;
const BODY_LIMIT = 64 * 1024;

class HttpError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

const fail = (status: number, message: string): never => {
  throw new HttpError(status, message);
};

function bearer(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  const m = typeof h === "string" ? /^Bearer\s+(\S+)$/i.exec(h) : null;
  return m?.[1];
}

const errors = { 400: S.ErrorBody, 401: S.ErrorBody, 403: S.ErrorBody, 404: S.ErrorBody, 409: S.ErrorBody };

export async function buildApp(ctx: FleetContext, o: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: o.logger ? { level: "warn" } : false,
    bodyLimit: BODY_LIMIT,
    // The console and the agents send small bodies; anything odd in the URL is refused, not guessed at.
    routerOptions: { maxParamLength: 200 },
    forceCloseConnections: true,
    ajv: { customOptions: { removeAdditional: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(TypeBoxValidatorCompiler);

  // Keep the raw bytes of JSON bodies: a node's signature covers exactly them.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (req, body, done) => {
    const buf = body as Buffer;
    req.rawBody = buf;
    if (buf.length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(buf.toString("utf8")));
    } catch {
      done(new HttpError(400, "the body is not valid JSON"), undefined);
    }
  });

  app.setErrorHandler(
    (err: Error & { statusCode?: number; code?: string; validation?: unknown }, req, reply) => {
      let status = err.statusCode ?? 500;
      if (err.validation) status = 400;
      if (status < 400 || status > 599) status = 500;
      const message =
        status >= 500
          ? "internal error"
          : err.code === "FST_ERR_CTP_BODY_TOO_LARGE"
            ? "the body is too large"
            : (err.message || "bad request").split("\n")[0]!.slice(0, 500);
      if (status >= 500) req.log.error(err);
      void reply.status(status).send({ error: message, statusCode: status });
    },
  );
  app.setNotFoundHandler((req, reply) => {
    void reply
      .status(404)
      .send({ error: `no route ${req.method} ${req.url.split("?")[0]}`, statusCode: 404 });
  });

  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: { title: "Berth fleet server", version: "1" },
      components: {
        securitySchemes: {
          bearer: { type: "http", scheme: "bearer" },
          session: { type: "apiKey", in: "cookie", name: SESSION_COOKIE },
          node: { type: "apiKey", in: "header", name: "X-Berth-Signature" },
        },
      },
    },
  });

  app.addHook("onSend", async (_req, reply, payload) => {
    reply.header("x-content-type-options", "nosniff");
    reply.header("referrer-policy", "no-referrer");
    reply.header("cache-control", reply.getHeader("cache-control") ?? "no-store");
    return payload;
  });

  // ---- authentication -------------------------------------------------------------------------

  const nodeAuth = async (req: FastifyRequest) => {
    const id = req.headers[NODE_HEADER];
    const time = req.headers[TIME_HEADER];
    const sig = req.headers[SIGNATURE_HEADER];
    if (typeof id !== "string" || typeof time !== "string" || typeof sig !== "string")
      fail(401, "this request needs a node signature (X-Berth-Node, X-Berth-Time, X-Berth-Signature)");
    const t = Number(time);
    if (!/^\d{1,16}$/.test(time as string) || Math.abs(t - ctx.now()) > MAX_SKEW_MS)
      fail(401, "the request time is missing or too far from the server's clock");
    let known = ctx.nodeKeys.get(id as string);
    if (!known) {
      const row = await ctx.db.get<{ nid: number; public_key: string }>(
        "SELECT nid, public_key FROM nodes WHERE id = ?",
        [id as string],
      );
      const key = row ? publicKeyFromRaw(row.public_key) : undefined;
      if (!row || !key) fail(401, "unknown node or bad signature");
      known = { nid: Number(row!.nid), key: key! };
      ctx.nodeKeys.set(id as string, known);
    }
    const text = requestText(req.method, req.url, time as string, sha256Hex(req.rawBody ?? ""));
    if (!verifyText(known.key, text, sig as string)) fail(401, "unknown node or bad signature");
    // Replays: the time must be newer than the last one accepted from this node, in any process. The
    // route checks it in its own transaction (claimTime), so a report costs one commit, not two.
    req.node = { nid: known.nid, id: id as string, time: t };
  };

  /** Takes the request's time as the node's latest; a request not newer than the last is a replay. */
  const claimTime = async (tx: Sql, node: { nid: number; time: number }) => {
    const n = await tx.run("UPDATE nodes SET last_time = ? WHERE nid = ? AND last_time < ?", [
      node.time,
      node.nid,
      node.time,
    ]);
    if (n !== 1) fail(401, "replayed or out-of-order request");
  };

  const actorAuth = (need: "read" | "admin") => async (req: FastifyRequest) => {
    const token = bearer(req);
    let actor: Actor | undefined;
    if (token) actor = await actorOf(ctx, token, "api");
    else {
      const session = req.cookies[SESSION_COOKIE];
      if (session) {
        actor = await actorOf(ctx, session, "session");
        if (actor && req.method !== "GET" && req.method !== "HEAD") {
          // Cookie-borne changes must come from the console itself.
          const origin = req.headers.origin;
          if (origin && origin !== `${req.protocol}://${req.headers.host}`)
            fail(403, "cross-origin request refused");
        }
      }
    }
    if (!actor) fail(401, "this request needs an API token or a console session");
    if (need === "admin" && actor!.role !== "admin") fail(403, `${actor!.name} is read-only`);
    req.actor = actor;
  };
  const reader = actorAuth("read");
  const admin = actorAuth("admin");
  const who = (req: FastifyRequest) => req.actor?.name ?? "?";

  // ---- documentation --------------------------------------------------------------------------

  app.get("/api/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  // ---- agents ---------------------------------------------------------------------------------

  app.post(
    "/api/v1/enroll",
    { schema: { tags: ["agent"], body: S.EnrollRequest, response: { 201: S.EnrollResponse, ...errors } } },
    async (req, reply) => {
      const b = req.body;
      const key = publicKeyFromRaw(b.publicKey);
      if (!key) fail(400, "publicKey is not a base64 Ed25519 public key");
      if (!verifyText(key!, enrollProofText(b.token, b.publicKey, b.hostname), b.proof))
        fail(400, "proof is not a signature by that key");
      const nodeId = await ctx.db.tx(async (tx) => {
        const tokenName = await spendEnrollToken(ctx, tx, b.token);
        if (!tokenName) return undefined;
        const id = randomUUID();
        await tx.run(
          "INSERT INTO nodes (id, hostname, public_key, machine_id, agent_version, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)",
          [id, b.hostname, b.publicKey, b.machineId ?? null, b.agentVersion ?? null, ctx.now()],
        );
        await audit(ctx, tx, `enroll-token:${tokenName}`, "node.enroll", id, { hostname: b.hostname });
        return id;
      });
      if (!nodeId) fail(401, "the enrolment token is unknown, expired or used up");
      return reply.status(201).send({ nodeId: nodeId!, interval: ctx.interval });
    },
  );

  app.post(
    "/api/v1/agent/reports",
    {
      bodyLimit: REPORT_LIMIT,
      preValidation: nodeAuth,
      schema: {
        tags: ["agent"],
        body: S.Report,
        response: { 200: S.ReportAck, 409: S.ReportConflict, 400: S.ErrorBody, 401: S.ErrorBody },
      },
    },
    async (req, reply) => {
      try {
        checkReport(req.body);
      } catch (e) {
        if (e instanceof ReportError) fail(400, e.message);
        throw e;
      }
      const out = await applyReport(ctx, req.node!.nid, req.body, sha256Hex(req.rawBody ?? ""), (tx) =>
        claimTime(tx, req.node!),
      );
      if (out.kind === "conflict")
        return reply.status(409).send({ error: out.error, expected: out.expected, full: out.full });
      return { ack: out.ack, jobs: out.jobs, interval: ctx.interval };
    },
  );

  app.get(
    "/api/v1/agent/jobs",
    { preValidation: nodeAuth, schema: { tags: ["agent"], response: { 200: S.JobList, 401: S.ErrorBody } } },
    async (req) => ({
      jobs: await ctx.db.tx(async (tx) => {
        await claimTime(tx, req.node!);
        return takeJobsForNode(ctx, tx, req.node!.nid);
      }),
    }),
  );

  app.post(
    "/api/v1/agent/jobs/:id",
    {
      preValidation: nodeAuth,
      schema: { tags: ["agent"], params: S.IdParams, body: S.JobUpdate, response: { 200: S.Job, ...errors } },
    },
    async (req, reply) => {
      const r = await updateJobFromAgent(ctx, req.node!.nid, req.params.id, req.body, (tx) =>
        claimTime(tx, req.node!),
      );
      if (r.status !== 200) return reply.status(r.status).send({ error: r.error!, statusCode: r.status });
      return r.job!;
    },
  );

  app.get(
    "/api/v1/agent/config",
    {
      preValidation: nodeAuth,
      schema: {
        tags: ["agent"],
        response: {
          200: Type.Object({ interval: Type.Integer(), repository: Type.Optional(Type.String()) }),
          401: S.ErrorBody,
        },
      },
    },
    async (req) => {
      await ctx.db.tx((tx) => claimTime(tx, req.node!));
      // A URL, or a path on this server that the agent resolves against the address it uses for it.
      const repository = o.repositoryUrl ?? (o.repositoryDir ? "/repo/" : undefined);
      return { interval: ctx.interval, ...(repository ? { repository } : {}) };
    },
  );

  // ---- nodes and jobs (operator, console, berth fleet) ------------------------------------------

  app.get(
    "/api/v1/nodes",
    {
      onRequest: reader,
      schema: { tags: ["nodes"], querystring: S.NodeQuery, response: { 200: S.NodePage, ...errors } },
    },
    async (req) => {
      try {
        return await listNodes(ctx, req.query);
      } catch (e) {
        if (e instanceof QueryError) fail(400, e.message);
        throw e;
      }
    },
  );

  app.get(
    "/api/v1/nodes/:id",
    {
      onRequest: reader,
      schema: { tags: ["nodes"], params: S.IdParams, response: { 200: S.Node, ...errors } },
    },
    async (req) => (await getNode(ctx, req.params.id)) ?? fail(404, `no node ${req.params.id}`),
  );

  app.get(
    "/api/v1/nodes/:id/detail",
    {
      onRequest: reader,
      schema: { tags: ["nodes"], params: S.IdParams, response: { 200: S.NodeDetail, ...errors } },
    },
    async (req) => (await nodeDetail(ctx, req.params.id)) ?? fail(404, `no node ${req.params.id}`),
  );

  app.post(
    "/api/v1/nodes/:id/jobs",
    {
      onRequest: admin,
      schema: {
        tags: ["jobs"],
        params: S.IdParams,
        body: S.CreateJobRequest,
        response: { 201: S.CreateJobResponse, ...errors },
      },
    },
    async (req, reply) => {
      const id = await ctx.db.tx(async (tx) => {
        const node = await tx.get<{ nid: number; id: string }>("SELECT nid, id FROM nodes WHERE id = ?", [
          req.params.id,
        ]);
        if (!node) return undefined;
        const jobId = await createJob(
          ctx,
          tx,
          { nid: Number(node.nid), id: node.id },
          req.body.kind,
          req.body.params ?? {},
        );
        await audit(ctx, tx, who(req), "job.create", jobId, {
          node: node.id,
          kind: req.body.kind,
          params: req.body.params ?? {},
        });
        return jobId;
      });
      if (!id) fail(404, `no node ${req.params.id}`);
      return reply.status(201).send({ id: id! });
    },
  );

  app.get(
    "/api/v1/jobs/:id",
    {
      onRequest: reader,
      schema: { tags: ["jobs"], params: S.IdParams, response: { 200: S.Job, ...errors } },
    },
    async (req) => (await getJob(ctx.db, req.params.id)) ?? fail(404, `no job ${req.params.id}`),
  );

  app.get(
    "/api/v1/jobs",
    {
      onRequest: reader,
      schema: {
        tags: ["jobs"],
        querystring: Type.Object(
          {
            nodeId: Type.Optional(Type.String({ maxLength: 64 })),
            state: Type.Optional(S.JobState),
            rolloutId: Type.Optional(Type.String({ maxLength: 64 })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: S.JobList, ...errors },
      },
    },
    async (req) => ({ jobs: await listJobs(ctx.db, req.query) }),
  );

  // ---- rollouts -------------------------------------------------------------------------------

  app.post(
    "/api/v1/rollouts",
    {
      onRequest: admin,
      schema: { tags: ["rollouts"], body: S.CreateRolloutRequest, response: { 201: S.Rollout, ...errors } },
    },
    async (req, reply) => {
      const id = await ctx.db.tx(async (tx) => {
        const rid = await createRollout(ctx, tx, req.body);
        await audit(ctx, tx, who(req), "rollout.create", rid, req.body);
        return rid;
      });
      return reply.status(201).send((await getRollout(ctx, id))!);
    },
  );
  app.get(
    "/api/v1/rollouts",
    { onRequest: reader, schema: { tags: ["rollouts"], response: { 200: S.RolloutList, ...errors } } },
    async () => ({ rollouts: await listRollouts(ctx) }),
  );
  app.get(
    "/api/v1/rollouts/:id",
    {
      onRequest: reader,
      schema: { tags: ["rollouts"], params: S.IdParams, response: { 200: S.Rollout, ...errors } },
    },
    async (req) => (await getRollout(ctx, req.params.id)) ?? fail(404, `no rollout ${req.params.id}`),
  );
  for (const action of ["pause", "resume", "stop"] as const)
    app.post(
      `/api/v1/rollouts/:id/${action}`,
      {
        onRequest: admin,
        schema: { tags: ["rollouts"], params: S.IdParams, response: { 200: S.Rollout, ...errors } },
      },
      async (req) => {
        const r = await ctx.db.tx(async (tx) => {
          const out = await setRolloutState(
            ctx,
            tx,
            req.params.id,
            action,
            action === "pause" ? `paused by ${who(req)}` : undefined,
          );
          if (out === "ok") await audit(ctx, tx, who(req), `rollout.${action}`, req.params.id);
          return out;
        });
        if (r === "missing") fail(404, `no rollout ${req.params.id}`);
        if (r === "conflict") fail(409, `rollout ${req.params.id} cannot ${action} from its state`);
        return (await getRollout(ctx, req.params.id))!;
      },
    );

  app.get(
    "/api/v1/settings",
    { onRequest: reader, schema: { tags: ["rollouts"], response: { 200: S.FleetSettings, ...errors } } },
    async () => ({ stopped: (await fleetStatus(ctx)).stopped }),
  );
  app.put(
    "/api/v1/settings",
    {
      onRequest: admin,
      schema: { tags: ["rollouts"], body: S.FleetSettings, response: { 200: S.FleetSettings, ...errors } },
    },
    async (req) => {
      await ctx.db.tx(async (tx) => {
        await tx.run(
          "INSERT INTO meta (key, value) VALUES ('stopped', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
          [String(req.body.stopped)],
        );
        await audit(ctx, tx, who(req), req.body.stopped ? "fleet.stop" : "fleet.start", null);
      });
      return { stopped: req.body.stopped };
    },
  );

  // ---- administration -------------------------------------------------------------------------

  app.post(
    "/api/v1/session",
    {
      schema: {
        tags: ["admin"],
        body: S.LoginRequest,
        response: { 200: S.Whoami, ...errors },
      },
    },
    async (req, reply) => {
      const s = await login(ctx, req.body.name, req.body.password);
      if (!s) {
        await audit(ctx, ctx.db, req.body.name, "session.refused", null);
        fail(401, "wrong name or password");
      }
      await audit(ctx, ctx.db, req.body.name, "session.create", null);
      void reply.setCookie(SESSION_COOKIE, s!.session, {
        httpOnly: true,
        secure: true,
        sameSite: "strict",
        path: "/",
        expires: new Date(s!.expiresAt),
      });
      return { name: req.body.name, role: s!.role, via: "session" };
    },
  );
  app.delete("/api/v1/session", { schema: { tags: ["admin"] } }, async (req, reply) => {
    const session = req.cookies[SESSION_COOKIE];
    if (session) await logout(ctx, session);
    void reply.clearCookie(SESSION_COOKIE, { path: "/" });
    return reply.status(204).send();
  });
  app.get(
    "/api/v1/whoami",
    { onRequest: reader, schema: { tags: ["admin"], response: { 200: S.Whoami, ...errors } } },
    async (req) => req.actor!,
  );
  app.post(
    "/api/v1/users",
    {
      onRequest: admin,
      schema: {
        tags: ["admin"],
        body: S.CreateUserRequest,
        response: { 201: Type.Object({ name: Type.String() }), ...errors },
      },
    },
    async (req, reply) => {
      await createUser(ctx.db, ctx, req.body.name, req.body.password, req.body.role);
      await audit(ctx, ctx.db, who(req), "user.create", req.body.name, { role: req.body.role });
      return reply.status(201).send({ name: req.body.name });
    },
  );
  app.post(
    "/api/v1/tokens",
    {
      onRequest: admin,
      schema: {
        tags: ["admin"],
        body: S.CreateTokenRequest,
        response: { 201: S.CreateTokenResponse, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body;
      if (b.kind === "api" && !b.role) fail(400, "an API token needs a role");
      const t = await issueToken(ctx, ctx.db, {
        kind: b.kind,
        role: b.kind === "api" ? b.role : undefined,
        name: b.name ?? who(req),
        ttlSeconds: b.ttlSeconds ?? (b.kind === "enroll" ? 3600 : undefined),
        uses: b.uses,
      });
      await audit(ctx, ctx.db, who(req), "token.create", b.name ?? null, {
        kind: b.kind,
        role: b.role,
        ttlSeconds: b.ttlSeconds,
        uses: b.uses,
      });
      return reply.status(201).send({
        token: t.token,
        expiresAt: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
      });
    },
  );
  app.get(
    "/api/v1/audit",
    {
      onRequest: reader,
      schema: {
        tags: ["admin"],
        querystring: Type.Object(
          { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
          { additionalProperties: false },
        ),
        response: { 200: S.AuditList, ...errors },
      },
    },
    async (req) => {
      const rows = await ctx.db.all<{
        id: number;
        at: number;
        actor: string;
        action: string;
        target: string | null;
        detail: string | null;
      }>("SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?", [
        req.query.limit ?? 100,
      ]);
      return {
        entries: rows.map((r) => ({
          id: Number(r.id),
          at: new Date(Number(r.at)).toISOString(),
          actor: r.actor,
          action: r.action,
          target: r.target,
          detail: r.detail ? (JSON.parse(r.detail) as unknown) : null,
        })),
      };
    },
  );

  // ---- fleet-wide views -----------------------------------------------------------------------

  app.get(
    "/api/v1/fleet/status",
    { onRequest: reader, schema: { tags: ["fleet"], response: { 200: S.FleetStatus, ...errors } } },
    async () => fleetStatus(ctx),
  );
  app.get(
    "/api/v1/fleet/vulnerabilities/history",
    { onRequest: reader, schema: { tags: ["fleet"], response: { 200: S.VulnHistory, ...errors } } },
    async () => vulnHistory(ctx),
  );
  app.get(
    "/api/v1/fleet/vulnerabilities/top",
    {
      onRequest: reader,
      schema: {
        tags: ["fleet"],
        querystring: Type.Object(
          { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) },
          { additionalProperties: false },
        ),
        response: { 200: S.TopVulns, ...errors },
      },
    },
    async (req) => topVulns(ctx, req.query.limit ?? 20),
  );
  app.get(
    "/api/v1/fleet/hardening",
    { onRequest: reader, schema: { tags: ["fleet"], response: { 200: S.RulePassRates, ...errors } } },
    async () => hardening(ctx),
  );
  app.get(
    "/api/v1/fleet/software",
    {
      onRequest: reader,
      schema: {
        tags: ["fleet"],
        querystring: S.SoftwareQuery,
        response: { 200: S.SoftwareResult, ...errors },
      },
    },
    async (req) => software(ctx, req.query.name, req.query.versionBelow),
  );
  app.get(
    "/api/v1/fleet/advisories",
    { onRequest: reader, schema: { tags: ["fleet"], response: { 200: S.AdvisoryList, ...errors } } },
    async () => advisories(ctx),
  );

  if (o.repositoryDir)
    await app.register(fastifyStatic, {
      root: o.repositoryDir,
      prefix: "/repo/",
      decorateReply: false,
      index: false,
      // TUF metadata changes in place (timestamp.json); the client checks what it gets.
      cacheControl: false,
    });
  if (o.consoleDir) await serveConsole(app, o.consoleDir);
  return app;
}

export type { FastifyReply };
