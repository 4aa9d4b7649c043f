// Licences from Debian copyright files. Machine-readable ones (DEP-5) name a short licence per Files
// paragraph; those names become SPDX identifiers where SPDX has one, else LicenseRef-<name>. A copyright
// file that is not machine-readable yields nothing (NOASSERTION), never a guess.

/** Debian short names that differ from their SPDX identifiers. */
const SPDX_OF: Record<string, string> = {
  expat: "MIT",
  mit: "MIT",
  "bsd-2-clause": "BSD-2-Clause",
  "bsd-3-clause": "BSD-3-Clause",
  "bsd-4-clause": "BSD-4-Clause",
  isc: "ISC",
  zlib: "Zlib",
  "apache-2.0": "Apache-2.0",
  "apache-2": "Apache-2.0",
  "mpl-1.1": "MPL-1.1",
  "mpl-2.0": "MPL-2.0",
  "epl-1.0": "EPL-1.0",
  "epl-2.0": "EPL-2.0",
  postgresql: "PostgreSQL",
  openssl: "OpenSSL",
  "artistic-1.0": "Artistic-1.0",
  artistic: "Artistic-1.0",
  "artistic-2.0": "Artistic-2.0",
  "cc0-1.0": "CC0-1.0",
  cc0: "CC0-1.0",
  "cc-by-4.0": "CC-BY-4.0",
  "cc-by-sa-3.0": "CC-BY-SA-3.0",
  "bsl-1.0": "BSL-1.0",
  "ofl-1.1": "OFL-1.1",
  unicode: "Unicode-DFS-2016",
  "python-2.0": "Python-2.0",
  curl: "curl",
  x11: "X11",
  "gfdl-1.3": "GFDL-1.3-only",
};

/** One Debian licence short name ("GPL-2+", "LGPL-2.1", "Expat") as an SPDX identifier. */
export function spdxId(name: string): string {
  const n = name.trim();
  const gnu = /^(A?GPL|LGPL|GFDL)-?(\d(?:\.\d)?)(\+)?$/i.exec(n);
  if (gnu) {
    const family = gnu[1]!.toUpperCase();
    const version = gnu[2]!.includes(".") ? gnu[2]! : `${gnu[2]}.0`;
    return `${family}-${version}-${gnu[3] ? "or-later" : "only"}`;
  }
  const known = SPDX_OF[n.toLowerCase()];
  if (known) return known;
  return `LicenseRef-${n.replace(/[^A-Za-z0-9.-]+/g, "-").replace(/^-+|-+$/g, "") || "unknown"}`;
}

/** A DEP-5 licence line ("GPL-2+ or Artistic", "BSD-3-clause and MIT") as an SPDX expression. */
export function spdxExpression(line: string): string {
  const withException = /\s+with\s+(\S+)\s+exception$/i.exec(line);
  const base = withException ? line.slice(0, withException.index) : line;
  const orParts = base.split(/\s+or\s+|\s*\|\s*/i).map((alt) =>
    alt
      .split(/\s+and\s+|\s*,\s*/i)
      .filter(Boolean)
      .map(spdxId),
  );
  const expr = orParts
    .map((ands) => (ands.length > 1 && orParts.length > 1 ? `(${ands.join(" AND ")})` : ands.join(" AND ")))
    .join(" OR ");
  return withException
    ? `${expr} WITH LicenseRef-${withException[1]!.replace(/[^A-Za-z0-9.-]/g, "-")}-exception`
    : expr;
}

/** The distinct licences a machine-readable copyright file names, in order of first mention. */
export function licensesOfCopyright(text: string): string[] {
  if (!/^Format:\s*\S*copyright-format/im.test(text)) return [];
  const out: string[] = [];
  for (const paragraph of text.split(/\n\s*\n/)) {
    if (!/^Files:/im.test(paragraph)) continue;
    const m = /^License:[ \t]*(\S[^\n]*)$/im.exec(paragraph);
    if (!m) continue;
    const expr = spdxExpression(m[1]!.trim());
    if (!out.includes(expr)) out.push(expr);
  }
  return out;
}

/** Several licences as one expression for an annotation ("A AND (B OR C)"). */
export function combine(licenses: string[]): string | undefined {
  if (!licenses.length) return undefined;
  return licenses.map((l) => (licenses.length > 1 && /\s(OR|WITH)\s/.test(l) ? `(${l})` : l)).join(" AND ");
}
