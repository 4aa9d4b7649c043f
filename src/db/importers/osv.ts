// OSV records (osv.dev schema): from a .json file, a directory of them, or a .zip export. Debian
// records become advisories per release (the ecosystem "Debian:13" names the release); npm and PyPI
// records are stored with their ranges for scanners of those ecosystems.

import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import yauzl from "yauzl";
import { BerthError } from "../../common/errors.ts";
import type { AdvisoryDb } from "../database.ts";
import { cvss3BaseScore, severityFromCvss } from "../severity.ts";

export interface OsvEvent {
  introduced?: string;
  fixed?: string;
  last_affected?: string;
  limit?: string;
}

interface OsvRecord {
  id?: string;
  aliases?: string[];
  summary?: string;
  details?: string;
  published?: string;
  severity?: { type?: string; score?: string }[];
  affected?: {
    package?: { ecosystem?: string; name?: string };
    ranges?: { type?: string; events?: OsvEvent[] }[];
    versions?: string[];
  }[];
}

const DEBIAN_RELEASES: Record<string, string> = {
  "9": "stretch",
  "10": "buster",
  "11": "bullseye",
  "12": "bookworm",
  "13": "trixie",
  "14": "forky",
};

/** "Debian:13" -> { ecosystem: "debian", release: "trixie" }; "npm" -> { ecosystem: "npm", release: "" }. */
export function osvEcosystem(eco: string): { ecosystem: string; release: string } | undefined {
  const [name, ver] = eco.split(":");
  if (name === "Debian") return { ecosystem: "debian", release: ver ? (DEBIAN_RELEASES[ver] ?? ver) : "" };
  if (name === "npm") return { ecosystem: "npm", release: "" };
  if (name === "PyPI") return { ecosystem: "pypi", release: "" };
  return undefined;
}

/** Whether `version` falls in an OSV ECOSYSTEM range, given an ordering for the ecosystem. */
export function inOsvRange(
  version: string,
  events: OsvEvent[],
  compare: (a: string, b: string) => number,
): boolean {
  const key = (e: OsvEvent) => e.introduced ?? e.fixed ?? e.last_affected ?? e.limit ?? "0";
  const sorted = [...events].sort((a, b) =>
    key(a) === "0" ? -1 : key(b) === "0" ? 1 : compare(key(a), key(b)),
  );
  let affected = false;
  for (const e of sorted) {
    if (e.introduced !== undefined && (e.introduced === "0" || compare(version, e.introduced) >= 0))
      affected = true;
    if (e.fixed !== undefined && compare(version, e.fixed) >= 0) affected = false;
    if (e.last_affected !== undefined && compare(version, e.last_affected) > 0) affected = false;
  }
  return affected;
}

async function* records(path: string): AsyncGenerator<{ rec: OsvRecord; where: string }> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new BerthError(`no such file or directory: ${path}`);
  const parse = (text: string, where: string): OsvRecord => {
    try {
      return JSON.parse(text) as OsvRecord;
    } catch {
      throw new BerthError(`${where}: not valid JSON`);
    }
  };
  if (st.isDirectory()) {
    for (const e of (await readdir(path, { withFileTypes: true, recursive: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    ))
      if (e.isFile() && e.name.endsWith(".json")) {
        const p = join(e.parentPath, e.name);
        yield { rec: parse(await readFile(p, "utf8"), p), where: p };
      }
    return;
  }
  if (path.endsWith(".zip")) {
    for (const { name, text } of await readZipJson(path))
      yield { rec: parse(text, `${path}:${name}`), where: `${path}:${name}` };
    return;
  }
  yield { rec: parse(await readFile(path, "utf8"), path), where: path };
}

/** Every .json member of a zip file (osv.dev's per-ecosystem all.zip). */
function readZipJson(path: string, maxBytes = 4 * 1024 ** 3): Promise<{ name: string; text: string }[]> {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true, strictFileNames: true, validateEntrySizes: true }, (err, zip) => {
      if (err || !zip) return reject(new BerthError(`${path}: not a readable zip file (${err?.message})`));
      const out: { name: string; text: string }[] = [];
      let total = 0;
      zip.on("error", (e: Error) => reject(new BerthError(`${path}: corrupt zip (${e.message})`)));
      zip.on("end", () => resolve(out));
      zip.on("entry", (entry: yauzl.Entry) => {
        if (!entry.fileName.endsWith(".json")) return zip.readEntry();
        total += entry.uncompressedSize;
        if (total > maxBytes)
          return reject(new BerthError(`${path}: expands beyond ${maxBytes} bytes; refusing it`));
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return reject(new BerthError(`${path}: ${entry.fileName}: ${e?.message}`));
          const chunks: Buffer[] = [];
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("error", (x: Error) =>
            reject(new BerthError(`${path}: ${entry.fileName}: ${x.message}`)),
          );
          stream.on("end", () => {
            out.push({ name: entry.fileName, text: Buffer.concat(chunks).toString("utf8") });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

export async function importOsv(db: AdvisoryDb, path: string): Promise<number> {
  const rows: unknown[][] = [];
  const vulns: unknown[][] = [];
  for await (const { rec, where } of records(path)) {
    if (!rec.id || !Array.isArray(rec.affected))
      throw new BerthError(`${where}: not an OSV record (no id or affected)`);
    const vector = rec.severity?.find((s) => s.type === "CVSS_V3")?.score;
    const cvss = vector ? cvss3BaseScore(vector) : undefined;
    const cves = [rec.id, ...(rec.aliases ?? [])].filter((x) => /^CVE-\d{4}-\d+$/.test(x));
    // Distribution records (DSA-..., DLA-...) are about CVEs; match them under the CVE ids.
    const ids = cves.length ? cves : [rec.id];
    for (const id of ids)
      vulns.push([
        id,
        rec.summary ?? null,
        rec.details ?? null,
        cvss ?? null,
        vector ?? null,
        cvss !== undefined ? severityFromCvss(cvss) : null,
        JSON.stringify([rec.id, ...(rec.aliases ?? [])]),
        rec.published ?? null,
      ]);
    for (const a of rec.affected) {
      const eco = a.package?.ecosystem ? osvEcosystem(a.package.ecosystem) : undefined;
      if (!eco || !a.package?.name) continue;
      const ranges = (a.ranges ?? []).filter((r) => r.type === "ECOSYSTEM" || r.type === "SEMVER");
      const fixed = ranges.flatMap((r) => r.events ?? []).find((e) => e.fixed)?.fixed;
      for (const id of ids)
        rows.push([
          id,
          eco.ecosystem,
          a.package.name,
          eco.release,
          fixed ? "fixed" : "no-fix-yet",
          fixed ?? null,
          JSON.stringify({ ranges: ranges.map((r) => r.events ?? []), versions: a.versions ?? [] }),
          rec.id,
        ]);
    }
  }
  const insert = db.db.prepare(
    `INSERT OR REPLACE INTO advisories (source, vuln_id, ecosystem, package, release, status, fixed_version, ranges, advisory)
     VALUES ('osv', ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertVuln = db.db.prepare(
    `INSERT INTO vulnerabilities (vuln_id, title, description, cvss, cvss_vector, severity, aliases, published) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT(vuln_id) DO UPDATE SET title = COALESCE(vulnerabilities.title, excluded.title), description = COALESCE(vulnerabilities.description, excluded.description),
       cvss = COALESCE(vulnerabilities.cvss, excluded.cvss), cvss_vector = COALESCE(vulnerabilities.cvss_vector, excluded.cvss_vector),
       severity = COALESCE(vulnerabilities.severity, excluded.severity), aliases = excluded.aliases`,
  );
  return db.replaceSource("osv", path, undefined, [], () => {
    for (const v of vulns) insertVuln.run(...(v as never[]));
    for (const r of rows) insert.run(...(r as never[]));
    return rows.length;
  });
}
