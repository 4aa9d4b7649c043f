// `berth repo verify`: a client run from a trusted root, exactly as a node makes it (RepoClient), that
// reports what the node would accept and why anything is refused: the metadata chain (a refusal there
// stops everything and is the one-line error), then every target's bytes, then the cross-references a
// node relies on (a release's files, an image's SBOMs) against the signed targets.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errorLine } from "../common/errors.ts";
import { RepoClient, type TrustedState } from "./client.ts";
import type { OsReleaseCustom } from "./kinds/os-release.ts";
import { isTargetKind, type RepoTarget } from "./targets.ts";

export interface TargetVerdict {
  name: string;
  kind: string;
  length: number;
  status: "ok" | "refused" | "unchecked";
  reason?: string;
}

export interface VerifyReport {
  url: string;
  trusted: TrustedState;
  targets: TargetVerdict[];
  refused: number;
  requests: number;
  bytes: number;
}

/** Problems in what a target's custom field names, checked against the whole signed set. */
export function referenceProblems(t: RepoTarget, all: Map<string, RepoTarget>): string[] {
  const out: string[] = [];
  if (!isTargetKind(t.custom.kind)) out.push(`unknown kind "${String(t.custom.kind)}"`);
  if (t.custom.kind === "os-release" && t.custom.member === "release") {
    const files = (t.custom as OsReleaseCustom).files ?? {};
    for (const [file, f] of Object.entries(files)) {
      const m = all.get(f.target);
      if (!m) out.push(`names ${file} as ${f.target}, which is not a signed target`);
      else if (m.length !== f.length || m.hashes.sha256 !== f.sha256)
        out.push(`records another length or hash for ${file} than its signed target ${f.target}`);
    }
  }
  if (t.custom.kind === "image" && t.custom.member === "image")
    for (const s of Object.values((t.custom.sboms ?? {}) as Record<string, string>))
      if (!all.has(s)) out.push(`names the SBOM ${s}, which is not a signed target`);
  return out;
}

export interface VerifyOptions {
  url: string;
  trustedRoot: string;
  /** The client state to start from (a node's); default a fresh one, removed afterwards. */
  cacheDir?: string;
  /** Download and check every target's bytes (default true). */
  targets?: boolean;
  onTarget?: (v: TargetVerdict) => void;
}

export async function verifyRepository(o: VerifyOptions): Promise<VerifyReport> {
  const scratch = await mkdtemp(join(tmpdir(), "berth-repo-verify-"));
  try {
    const client = new RepoClient({
      url: o.url,
      trustedRoot: o.trustedRoot,
      cacheDir: o.cacheDir ?? join(scratch, "state"),
    });
    await client.refresh();
    const trusted = await client.state();
    const list = await client.targets();
    const all = new Map(list.map((t) => [t.name, t]));
    const verdicts: TargetVerdict[] = [];
    for (const t of list) {
      const v: TargetVerdict = {
        name: t.name,
        kind: String(t.custom.kind),
        length: t.length,
        status: "unchecked",
      };
      const problems = referenceProblems(t, all);
      if (o.targets !== false) {
        try {
          const dest = join(scratch, "target");
          await client.download(t.name, dest);
          await rm(dest, { force: true });
          v.status = "ok";
        } catch (e) {
          v.status = "refused";
          v.reason = errorLine(e);
        }
      }
      if (problems.length && v.status !== "refused") {
        v.status = "refused";
        v.reason = problems.join("; ");
      }
      verdicts.push(v);
      o.onTarget?.(v);
    }
    return {
      url: client.url,
      trusted,
      targets: verdicts,
      refused: verdicts.filter((v) => v.status === "refused").length,
      requests: client.fetcher.log.length,
      bytes: client.fetcher.log.reduce((n, r) => n + r.bytes, 0),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
