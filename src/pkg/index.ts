// An in-memory view of one or more Packages indexes: every version of every package, the candidate
// version apt would pick (highest version; Berth uses no pinning), and who provides each virtual name.

import { createReadStream } from "node:fs";
import { BerthError } from "../common/errors.ts";
import { Deb822SyntaxError, type Stanza, streamDeb822 } from "./deb822.ts";
import { parseRelations, type RelationGroup } from "./relation.ts";
import { parseSourceField } from "./status.ts";
import { compareVersions } from "./version.ts";

export interface PackageRecord {
  name: string;
  version: string;
  architecture: string;
  source: string;
  sourceVersion: string;
  essential: boolean;
  priority?: string;
  section?: string;
  multiArch?: string;
  /** KiB, as in the Installed-Size field. */
  installedSize: number;
  filename?: string;
  size?: number;
  sha256?: string;
  /** Raw relationship fields; parsed on demand by relations(). */
  depends?: string;
  preDepends?: string;
  provides?: string;
  conflicts?: string;
  breaks?: string;
  recommends?: string;
  /** Which repository (suite) the record came from. */
  origin: string;
  /** Base URL of the mirror that serves `filename`. */
  baseUri?: string;
  /**
   * apt's package ID: the order in which apt's cache first meets the name, as a package or as the target
   * of any relationship. apt uses it as the last tie-break between providers of a virtual package.
   */
  id: number;
}

export const INDEX_FIELDS = new Set([
  "Package",
  "Version",
  "Architecture",
  "Source",
  "Essential",
  "Priority",
  "Section",
  "Multi-Arch",
  "Installed-Size",
  "Filename",
  "Size",
  "SHA256",
  "Depends",
  "Pre-Depends",
  "Provides",
  "Conflicts",
  "Breaks",
  // Read only to number packages in the order apt's cache creates them (see noteMentions).
  "Recommends",
  "Suggests",
  "Replaces",
  "Enhances",
]);

/** Relationship fields in the order apt's debListParser::NewVersion parses them. */
const MENTION_FIELDS = [
  "Pre-Depends",
  "Depends",
  "Conflicts",
  "Breaks",
  "Recommends",
  "Suggests",
  "Replaces",
  "Enhances",
  "Provides",
];
const NAME_IN_RELATION = /(?:^|[,|])\s*([a-z0-9][a-z0-9+.-]*)/g;

/** The names a stanza mentions, in apt's order: the package, then its relationship targets. */
function mentionsOf(s: Stanza): string[] {
  const out: string[] = [];
  if (s.Package) out.push(s.Package);
  for (const f of MENTION_FIELDS) {
    const v = s[f];
    if (!v) continue;
    for (const m of v.matchAll(NAME_IN_RELATION)) out.push(m[1]!);
  }
  return out;
}

/** One Packages file, parsed: its records, and the names it mentions in order of first appearance. */
export interface ParsedPackages {
  names: string[];
  records: PackageRecord[];
}

export interface Provider {
  pkg: PackageRecord;
  /** Version given in "Provides: name (= V)"; undefined for unversioned provides. */
  version?: string;
}

type RelationKind = "depends" | "preDepends" | "provides" | "conflicts" | "breaks" | "recommends";

export class PackageIndex {
  readonly architecture: string;
  private readonly versions = new Map<string, PackageRecord[]>();
  private readonly providerMap = new Map<string, Provider[]>();
  private readonly parsed = new WeakMap<PackageRecord, Partial<Record<RelationKind, RelationGroup[]>>>();
  private readonly mentionIds = new Map<string, number>();

  constructor(architecture = "amd64") {
    this.architecture = architecture;
  }

  get size(): number {
    return this.versions.size;
  }

  private mention(name: string): number {
    let id = this.mentionIds.get(name);
    if (id === undefined) {
      id = this.mentionIds.size;
      this.mentionIds.set(name, id);
    }
    return id;
  }

  /** Numbers the names a stanza mentions, in apt's order: the package, then its relationship targets. */
  noteMentions(s: Stanza): void {
    for (const name of mentionsOf(s)) this.mention(name);
  }

  recordFromStanza(s: Stanza, origin: string, baseUri?: string): PackageRecord | undefined {
    const name = s.Package;
    const version = s.Version;
    const arch = s.Architecture ?? "";
    if (!name || !version) throw new BerthError(`${origin}: a stanza lacks Package or Version`);
    if (arch !== "all" && arch !== this.architecture) return undefined;
    const src = parseSourceField(s.Source);
    return {
      name,
      version,
      architecture: arch,
      source: src.name ?? name,
      sourceVersion: src.version ?? version,
      essential: s.Essential === "yes",
      priority: s.Priority,
      section: s.Section,
      multiArch: s["Multi-Arch"],
      installedSize: Number(s["Installed-Size"] ?? 0) || 0,
      filename: s.Filename,
      size: s.Size ? Number(s.Size) : undefined,
      sha256: s.SHA256,
      depends: s.Depends,
      preDepends: s["Pre-Depends"],
      provides: s.Provides,
      conflicts: s.Conflicts,
      breaks: s.Breaks,
      recommends: s.Recommends,
      origin,
      baseUri,
      id: 0,
    };
  }

  add(rec: PackageRecord): void {
    let list = this.versions.get(rec.name);
    if (!list) {
      list = [];
      this.versions.set(rec.name, list);
    }
    // The same version from two suites is one version to apt; keep the first.
    if (list.some((r) => r.version === rec.version && r.architecture === rec.architecture)) return;
    rec.id = this.mention(rec.name);
    list.push(rec);
    if (rec.provides) {
      for (const group of this.relations(rec, "provides")) {
        for (const p of group) {
          let provs = this.providerMap.get(p.name);
          if (!provs) {
            provs = [];
            this.providerMap.set(p.name, provs);
          }
          provs.push({ pkg: rec, version: p.op === "=" ? p.version : undefined });
        }
      }
    }
  }

  async addPackagesFile(path: string, origin: string, baseUri?: string): Promise<void> {
    this.addParsed(await this.parsePackagesFile(path, origin, baseUri));
  }

  /**
   * A Packages file as this index takes it, without adding it: what `addParsed` needs, and plain data
   * (a cache can keep it; see Archive.loadIndex).
   */
  async parsePackagesFile(path: string, origin: string, baseUri?: string): Promise<ParsedPackages> {
    const records: PackageRecord[] = [];
    // A Set keeps insertion order: its order is the order of first appearance.
    const names = new Set<string>();
    try {
      for await (const s of streamDeb822(createReadStream(path), { fields: INDEX_FIELDS, source: origin })) {
        const rec = this.recordFromStanza(s, origin, baseUri);
        if (!rec) continue;
        for (const n of mentionsOf(s)) names.add(n);
        records.push(rec);
      }
    } catch (e) {
      if (e instanceof Deb822SyntaxError) throw new BerthError(`malformed Packages index: ${e.message}`);
      throw e;
    }
    return { names: [...names], records };
  }

  /**
   * Adds a parsed Packages file. Mentioning the file's names in their order of first appearance, then
   * adding its records, numbers every name as a stanza-by-stanza pass would: an id depends only on the
   * order in which names first appear.
   */
  addParsed(p: ParsedPackages): void {
    for (const n of p.names) this.mention(n);
    for (const rec of p.records) this.add(rec);
  }

  addStanzas(stanzas: Iterable<Stanza>, origin: string): void {
    for (const s of stanzas) {
      const rec = this.recordFromStanza(s, origin);
      if (rec) this.noteMentions(s);
      if (rec) this.add(rec);
    }
  }

  /**
   * Installed packages of a dpkg status file as records (with their Provides and Depends), to serve as
   * the already-installed base of a resolution.
   */
  async recordsFromStatusFile(path: string): Promise<PackageRecord[]> {
    const out: PackageRecord[] = [];
    const fields = new Set([...INDEX_FIELDS, "Status"]);
    try {
      for await (const s of streamDeb822(createReadStream(path), { fields, source: path })) {
        if (s.Status && !s.Status.endsWith(" installed")) continue;
        this.noteMentions(s);
        const rec = this.recordFromStanza(s, "installed");
        if (rec) rec.id = this.mention(rec.name);
        if (rec) out.push(rec);
      }
    } catch (e) {
      if (e instanceof Deb822SyntaxError) throw new BerthError(`malformed dpkg status: ${e.message}`);
      throw e;
    }
    return out;
  }

  names(): IterableIterator<string> {
    return this.versions.keys();
  }

  allVersions(name: string): readonly PackageRecord[] {
    return this.versions.get(name) ?? [];
  }

  /** apt's candidate with default pins: the highest version. */
  candidate(name: string): PackageRecord | undefined {
    const list = this.versions.get(name);
    if (!list || list.length === 0) return undefined;
    let best = list[0]!;
    for (let i = 1; i < list.length; i++)
      if (compareVersions(list[i]!.version, best.version) > 0) best = list[i]!;
    return best;
  }

  /** Providers of a virtual (or real) name, all versions; callers filter by candidate. */
  providers(name: string): readonly Provider[] {
    return this.providerMap.get(name) ?? [];
  }

  /** Parsed relationship groups of a record, cached. */
  relations(rec: PackageRecord, kind: RelationKind): RelationGroup[] {
    let cache = this.parsed.get(rec);
    if (!cache) {
      cache = {};
      this.parsed.set(rec, cache);
    }
    let groups = cache[kind];
    if (!groups) {
      try {
        groups = parseRelations(rec[kind], `${rec.name} ${kind}`);
      } catch (e) {
        throw new BerthError(`${rec.origin}: package ${rec.name} ${rec.version}: ${(e as Error).message}`);
      }
      cache[kind] = groups;
    }
    return groups;
  }
}
