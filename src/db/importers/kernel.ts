// Linux kernel CVE data: the kernel CNA's CVE JSON 5 records (one per line, optionally gzipped, or a
// directory of .json files), and the older per-branch fix data (stream_fixes.json and CVEs.txt of the
// community linux-kernel-cves dataset) for CVEs before the CNA existed.

import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { gunzipSync } from "node:zlib";
import { decompressor } from "../../common/decompress.ts";
import { BerthError } from "../../common/errors.ts";
import type { AdvisoryDb } from "../database.ts";
import { severityFromCvss } from "../severity.ts";

interface CveRecord {
  cveMetadata?: { cveId?: string; state?: string; datePublished?: string };
  containers?: {
    cna?: {
      title?: string;
      descriptions?: { lang?: string; value?: string }[];
      metrics?: {
        cvssV3_1?: { baseScore?: number; vectorString?: string; baseSeverity?: string };
        cvssV3_0?: { baseScore?: number; vectorString?: string };
      }[];
      affected?: {
        product?: string;
        defaultStatus?: string;
        versions?: { version?: string; versionType?: string }[];
        programFiles?: string[];
      }[];
    };
  };
}

async function* jsonLines(path: string): AsyncGenerator<{ text: string; where: string }> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new BerthError(`no such file or directory: ${path}`);
  if (st.isDirectory()) {
    const walk = async function* (dir: string): AsyncGenerator<{ text: string; where: string }> {
      for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
        a.name < b.name ? -1 : 1,
      )) {
        const p = join(dir, e.name);
        if (e.isDirectory()) yield* walk(p);
        else if (e.name.endsWith(".json")) yield { text: await readFile(p, "utf8"), where: p };
      }
    };
    yield* walk(path);
    return;
  }
  const input = path.endsWith(".gz")
    ? createReadStream(path).pipe(decompressor("gz", path))
    : createReadStream(path);
  let n = 0;
  for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
    n++;
    if (line.trim()) yield { text: line, where: `${path}:${n}` };
  }
}

/** The semver "affected" entry of a kernel CNA record (the one with a defaultStatus and version numbers). */
export function semverAffected(
  rec: CveRecord,
): { defaultStatus: string; versions: unknown[]; programFiles: string[] } | undefined {
  for (const a of rec.containers?.cna?.affected ?? []) {
    if (a.product !== "Linux") continue;
    const versions = a.versions ?? [];
    if (versions.some((v) => v.versionType === "git")) continue;
    if (!versions.length) continue;
    return { defaultStatus: a.defaultStatus ?? "unaffected", versions, programFiles: a.programFiles ?? [] };
  }
  return undefined;
}

export async function importKernelCna(db: AdvisoryDb, path: string): Promise<number> {
  const insert = db.db.prepare(
    "INSERT OR REPLACE INTO kernel_cna (cve, default_status, versions, program_files) VALUES (?, ?, ?, ?)",
  );
  const vuln = db.db.prepare(
    `INSERT INTO vulnerabilities (vuln_id, title, description, cvss, cvss_vector, severity, published) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT(vuln_id) DO UPDATE SET title = excluded.title, cvss = COALESCE(excluded.cvss, vulnerabilities.cvss),
       cvss_vector = COALESCE(excluded.cvss_vector, vulnerabilities.cvss_vector), severity = COALESCE(excluded.severity, vulnerabilities.severity),
       description = COALESCE(vulnerabilities.description, excluded.description), published = excluded.published`,
  );
  const records: { cve: string; aff: NonNullable<ReturnType<typeof semverAffected>>; rec: CveRecord }[] = [];
  for await (const { text, where } of jsonLines(path)) {
    let rec: CveRecord;
    try {
      rec = JSON.parse(text) as CveRecord;
    } catch {
      throw new BerthError(`${where}: not valid JSON`);
    }
    const cve = rec.cveMetadata?.cveId;
    if (!cve || rec.cveMetadata?.state === "REJECTED") continue;
    const aff = semverAffected(rec);
    if (aff) records.push({ cve, aff, rec });
  }
  if (!records.length) throw new BerthError(`${path}: no kernel CNA records with version ranges`);
  return db.replaceSource("kernel-cna", path, undefined, ["kernel_cna"], () => {
    for (const { cve, aff, rec } of records) {
      insert.run(cve, aff.defaultStatus, JSON.stringify(aff.versions), JSON.stringify(aff.programFiles));
      const m = rec.containers?.cna?.metrics?.find((x) => x.cvssV3_1 || x.cvssV3_0);
      const score = m?.cvssV3_1?.baseScore ?? m?.cvssV3_0?.baseScore;
      const desc = rec.containers?.cna?.descriptions?.find((d) => d.lang === "en")?.value;
      vuln.run(
        cve,
        rec.containers?.cna?.title ?? null,
        desc ?? null,
        score ?? null,
        m?.cvssV3_1?.vectorString ?? m?.cvssV3_0?.vectorString ?? null,
        score !== undefined ? severityFromCvss(score) : null,
        rec.cveMetadata?.datePublished ?? null,
      );
    }
    return records.length;
  });
}

/** CVEs.txt lines: "CVE-2016-5195: <sha> - <sha> (v2.6.22-rc1 to v4.9-rc2)". */
export function parseCvesTxt(text: string): { cve: string; introduced?: string; fixed?: string }[] {
  const out: { cve: string; introduced?: string; fixed?: string }[] = [];
  for (const line of text.split("\n")) {
    const m = /^(CVE-\d{4}-\d+):.*\((\S+) to (\S+)\)\s*$/.exec(line);
    if (!m) continue;
    const v = (s: string) => (/^v\d/.test(s) ? s.slice(1) : undefined);
    out.push({ cve: m[1]!, introduced: v(m[2]!), fixed: v(m[3]!) });
  }
  return out;
}

export async function importKernelStreams(
  db: AdvisoryDb,
  streamFixes: string,
  cvesTxt?: string,
): Promise<number> {
  const raw = await readFile(streamFixes);
  let data: Record<string, Record<string, { fixed_version?: string }>>;
  try {
    data = JSON.parse((streamFixes.endsWith(".gz") ? gunzipSync(raw) : raw).toString("utf8"));
  } catch (e) {
    throw new BerthError(`${streamFixes}: not valid JSON (${(e as Error).message})`);
  }
  const mainline = cvesTxt ? parseCvesTxt(await readFile(cvesTxt, "utf8")) : [];
  const insert = db.db.prepare(
    "INSERT OR REPLACE INTO kernel_streams (cve, branch, fixed_version) VALUES (?, ?, ?)",
  );
  const insertMainline = db.db.prepare(
    "INSERT OR REPLACE INTO kernel_mainline (cve, introduced, fixed) VALUES (?, ?, ?)",
  );
  return db.replaceSource(
    "kernel-streams",
    cvesTxt ? `${streamFixes} + ${cvesTxt}` : streamFixes,
    undefined,
    ["kernel_streams", "kernel_mainline"],
    () => {
      let n = 0;
      for (const [cve, branches] of Object.entries(data)) {
        if (!/^CVE-\d{4}-\d+$/.test(cve) || !branches || typeof branches !== "object") continue;
        for (const [branch, fix] of Object.entries(branches)) {
          if (!fix?.fixed_version) continue;
          insert.run(cve, branch, fix.fixed_version);
          n++;
        }
      }
      for (const m of mainline) insertMainline.run(m.cve, m.introduced ?? null, m.fixed ?? null);
      return n + mainline.length;
    },
  );
}
