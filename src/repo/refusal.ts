// Turns what tuf-js throws into one line that names the role and the reason ("timestamp metadata
// refused: version 2 is older than version 3 already trusted (rollback)"). tuf-js's error classes do not
// survive its own wrapping (loadSnapshot and loadTargets re-throw as "Unable to load ... error Error:
// ..."), so the reason is read from the message text of the pinned tuf-js version; the attack tests
// exercise every pattern here, so a tuf-js upgrade that changes a message fails them.

import { BerthError } from "../common/errors.ts";

/** A refusal by the TUF client: nothing from the refused file was trusted, cached or written. */
export class RepoRefusal extends BerthError {
  /** "root", "timestamp", "snapshot", "targets", or "target NAME". */
  readonly role: string;
  readonly reason: string;
  constructor(role: string, reason: string) {
    super(`${/^target /.test(role) ? role : `${role} metadata`} refused: ${reason}`);
    this.name = "RepoRefusal";
    this.role = role;
    this.reason = reason;
  }
}

/** Which metadata records the length and hash a file is checked against. */
const PARENT: Record<string, string> = { snapshot: "timestamp", targets: "snapshot" };

export interface RefusalContext {
  /** The role being fetched when it failed ("target NAME" for a target download). */
  role: string;
  url?: string;
  /** The length allowance of that request. */
  maxLength?: number;
  /** Why that request got no answer (ECONNREFUSED, a stall), when it got none. */
  networkError?: string;
}

/** Strips tuf-js's "Unable to load snapshot metadata error Error: " wrapping. */
function innerMessage(msg: string): string {
  return msg.replace(/^Unable to load (?:snapshot metadata|targets) error (?:\w*Error: )?/, "");
}

interface Rule {
  re: RegExp;
  /** The role the message is about, when it says (else the role being fetched). */
  role?: (m: RegExpExecArray) => string;
  reason: (m: RegExpExecArray, c: { parent?: string; max: string }) => string;
}

const RULES: Rule[] = [
  {
    re: /^(\w+) was signed by (\d+)\/(\d+) keys/,
    role: (m) => m[1]!,
    reason: (m) =>
      `signed by ${m[2]} of the ${m[3]} trusted keys it needs (an untrusted key, or below the threshold)`,
  },
  {
    re: /^Expected version (\d+), got (\d+)/,
    role: () => "root",
    reason: (m) =>
      `version ${m[2]} offered as the next root, where version ${m[1]} must come next (a root may not skip a version)`,
  },
  {
    re: /^New timestamp version (\d+) is less than current version (\d+)/,
    role: () => "timestamp",
    reason: (m) => `version ${m[1]} is older than version ${m[2]} already trusted (rollback)`,
  },
  {
    re: /^New snapshot version (\d+) is less than current version (\d+)/,
    role: () => "timestamp",
    reason: (m) => `it names snapshot version ${m[1]}, older than version ${m[2]} already trusted (rollback)`,
  },
  {
    re: /^New version (\d+) of (\S+)\.json is less than current version (\d+)/,
    role: () => "snapshot",
    reason: (m) => `it names ${m[2]} version ${m[1]}, older than version ${m[3]} already trusted (rollback)`,
  },
  {
    re: /^Missing file (\S+) in new snapshot/,
    role: () => "snapshot",
    reason: (m) => `it no longer lists ${m[1]}, which the trusted snapshot lists (rollback)`,
  },
  {
    re: /^Version (\d+) of (\S+) does not match snapshot version (\d+)/,
    role: (m) => m[2]!,
    reason: (m) => `version ${m[1]}, but the snapshot names version ${m[3]} (mix-and-match)`,
  },
  {
    re: /^Snapshot version doesn't match timestamp/,
    role: () => "snapshot",
    reason: () => "its version is not the one the timestamp names (mix-and-match)",
  },
  {
    re: /^(?:Final )?(\w+)\.json is expired/,
    role: (m) => m[1]!,
    reason: () => "expired (a freeze attack, or a repository whose online roles nobody refreshed)",
  },
  {
    re: /^Expected length (\d+) but got (\d+)/,
    reason: (m, c) =>
      `${m[2]} bytes where the ${c.parent ?? "trusted"} metadata says ${m[1]} (changed or swapped file${c.parent === "snapshot" ? ", mix-and-match" : ""})`,
  },
  {
    re: /^Expected hash \w+ but got \w+/,
    reason: (_m, c) =>
      `its SHA-256 is not the one the ${c.parent ?? "trusted"} metadata records (changed bytes${c.parent === "snapshot" ? ", or mix-and-match" : ""})`,
  },
  {
    re: /Max length reached/,
    reason: (_m, c) => `the server sent more than the${c.max} bytes allowed (endless data)`,
  },
  {
    re: /^(?:SyntaxError: )?(?:Unexpected token|Unexpected end of JSON|Expected property name|Unterminated string|Bad control character|Expected ',' or|Unexpected non-whitespace|.* is not valid JSON)/,
    reason: (m) => `not valid JSON (${m.input.replace(/^SyntaxError: /, "")})`,
  },
  {
    re: /is not defined|must be|is not an array|expected '|Expected '|missing|malformed|Failed to parse|Unsupported specVersion|multiple signatures|Cannot (?:read|convert)/i,
    reason: (m) => `malformed metadata (${m.input.replace(/^\w*Error: /, "")})`,
  },
];

/** The refusal for an error thrown by tuf-js (or the fetcher) while working on `ctx.role`. */
export function refusalOf(e: unknown, ctx: RefusalContext): BerthError {
  if (e instanceof BerthError) return e;
  const msg = innerMessage(e instanceof Error ? e.message : String(e));
  const status = (e as { statusCode?: number } | undefined)?.statusCode;
  const code = (e as { cause?: { code?: string } } | undefined)?.cause?.code;
  const parent = /^target /.test(ctx.role) ? "targets" : PARENT[ctx.role];
  const max = ctx.maxLength !== undefined && Number.isFinite(ctx.maxLength) ? ` ${ctx.maxLength}` : "";
  // Not refusals: the repository did not answer, or answered with an error.
  const label = /^target /.test(ctx.role) ? ctx.role : `${ctx.role} metadata`;
  const http = status ?? Number(/^HTTP (\d{3})\b/.exec(msg)?.[1] ?? Number.NaN);
  if (!Number.isNaN(http))
    return new BerthError(
      `${label}: HTTP ${http} for ${ctx.url ?? "the request"}${http === 404 ? " (missing from the repository)" : ""}`,
    );
  if (ctx.networkError || /fetch failed/.test(msg))
    return new BerthError(`cannot reach ${ctx.url ?? "the repository"}: ${ctx.networkError ?? code ?? msg}`);
  for (const r of RULES) {
    const m = r.re.exec(msg);
    if (m) return new RepoRefusal(r.role?.(m) ?? ctx.role, r.reason(m, { parent, max }));
  }
  return new RepoRefusal(ctx.role, code ? `${msg} (${code})` : msg);
}
