// Dependency closure of an install request, following apt's own marking algorithm
// (pkgDepCache::MarkInstall in apt-pkg/depcache.cc) so the set matches `apt-get install
// --no-install-recommends`: Pre-Depends then Depends in field order, depth first; an or-group already
// satisfied by something marked is skipped; otherwise the first alternative whose candidate can be
// installed wins, with virtual packages' providers ordered as apt's CompareProviders orders them.
// apt's problem resolver (used only when marking leaves breakage) is not reproduced; conflicts are
// reported instead.

import type { PackageIndex, PackageRecord } from "./index.ts";
import { formatGroup, formatRelation, type Relation, type RelationGroup } from "./relation.ts";
import { satisfies } from "./version.ts";

export type ReasonKind = "requested" | "essential" | "priority" | "pre-depends" | "depends" | "recommends";

export interface Reason {
  kind: ReasonKind;
  /** The package whose dependency pulled this one in. */
  parent?: string;
  /** The dependency as written, e.g. "libc6 (>= 2.34)" or "default-dbus-system-bus | dbus-system-bus". */
  relation?: string;
}

export interface ResolvedPackage {
  name: string;
  version: string;
  architecture: string;
  source: string;
  installedSize: number;
  reason: Reason;
}

export interface Problem {
  package: string;
  relation: string;
  message: string;
}

export interface Resolution {
  /** New packages to install, in the order they were marked. */
  packages: ResolvedPackage[];
  /** Sum of Installed-Size of `packages`, in bytes. */
  installedBytes: number;
  /** Requested or required packages that cannot be installed, and dependencies nothing satisfies. */
  unsatisfied: Problem[];
  /** Conflicts and Breaks between packages of the result (and the installed base). */
  conflicts: Problem[];
}

export interface RequestItem {
  name: string;
  op?: Relation["op"];
  version?: string;
}

export interface ResolveOptions {
  /** Packages already on the system (a base root's status); they satisfy dependencies. */
  installed?: readonly PackageRecord[];
  /** Also install every Essential: yes package, as debootstrap/mmdebstrap do. */
  essential?: boolean;
  /** Also install every Priority: required package. */
  required?: boolean;
  /** Also install every package of these priorities (mmdebstrap's standard variant: required, important, standard). */
  priorities?: string[];
  /** Follow Recommends as apt does with APT::Install-Recommends (satisfied when possible, never fatal). */
  recommends?: boolean;
}

const PRIORITY_RANK: Record<string, number> = {
  required: 1,
  important: 2,
  standard: 3,
  optional: 4,
  extra: 5,
};

/** Parses "name", "name=version" or "name (>= version)"-like request items. */
export function parseRequest(text: string): RequestItem {
  const eq = /^([a-z0-9][a-z0-9+.-]*)=(\S+)$/.exec(text);
  if (eq) return { name: eq[1]!, op: "=", version: eq[2]! };
  const rel = /^([a-z0-9][a-z0-9+.-]*)\s*\(\s*(<<|<=|=|>=|>>)\s*([^\s)]+)\s*\)$/.exec(text);
  if (rel) return { name: rel[1]!, op: rel[2] as Relation["op"], version: rel[3]! };
  if (/^[a-z0-9][a-z0-9+.-]*$/.test(text)) return { name: text };
  throw new Error(`not a package request: "${text}" (use NAME, NAME=VERSION or "NAME (>= VERSION)")`);
}

class Resolver {
  private readonly index: PackageIndex;
  /** What will be on the system afterwards: installed packages plus marked ones, by name. */
  private readonly state = new Map<string, PackageRecord>();
  private readonly installedNames = new Set<string>();
  /** Virtual names provided by something in `state`. */
  private readonly provided = new Map<string, { pkg: PackageRecord; version?: string }[]>();
  readonly marked = new Map<string, { rec: PackageRecord; reason: Reason }>();
  readonly unsatisfied: Problem[] = [];

  private readonly recommends: boolean;

  constructor(index: PackageIndex, installed: readonly PackageRecord[], recommends = false) {
    this.index = index;
    this.recommends = recommends;
    for (const rec of installed) {
      this.installedNames.add(rec.name);
      this.enter(rec);
    }
  }

  private enter(rec: PackageRecord): void {
    this.state.set(rec.name, rec);
    for (const group of this.index.relations(rec, "provides"))
      for (const p of group) {
        let list = this.provided.get(p.name);
        if (!list) {
          list = [];
          this.provided.set(p.name, list);
        }
        list.push({ pkg: rec, version: p.op === "=" ? p.version : undefined });
      }
  }

  private leave(rec: PackageRecord): void {
    if (this.state.get(rec.name) === rec) this.state.delete(rec.name);
    for (const group of this.index.relations(rec, "provides"))
      for (const p of group) {
        const list = this.provided.get(p.name);
        if (list)
          this.provided.set(
            p.name,
            list.filter((e) => e.pkg !== rec),
          );
      }
  }

  /** apt's DepInstall: something installed or marked satisfies this alternative. */
  private satisfiedNow(rel: Relation): boolean {
    const real = this.state.get(rel.name);
    if (real && versionOk(real.version, rel)) return true;
    for (const p of this.provided.get(rel.name) ?? []) if (provideOk(p.version, rel)) return true;
    return false;
  }

  /** apt's DepCVer: some candidate version could satisfy this alternative. */
  private satisfiableByCandidate(rel: Relation): boolean {
    return this.solutionsFor(rel).length > 0;
  }

  /** Candidate versions that satisfy one alternative: the package itself and its providers. */
  private solutionsFor(rel: Relation): PackageRecord[] {
    const out: PackageRecord[] = [];
    const cand = this.index.candidate(rel.name);
    if (cand && versionOk(cand.version, rel)) out.push(cand);
    for (const p of this.index.providers(rel.name)) {
      if (this.index.candidate(p.pkg.name) !== p.pkg) continue;
      if (!provideOk(p.version, rel)) continue;
      if (!out.includes(p.pkg)) out.push(p.pkg);
    }
    return out;
  }

  /** apt's getAllPossibleSolutions with CompareProviders ordering. */
  private possibleSolutions(group: RelationGroup): PackageRecord[] {
    const upgrades: PackageRecord[] = [];
    const fresh: PackageRecord[] = [];
    for (const rel of group) {
      const list = this.solutionsFor(rel).sort((a, b) => this.compareProviders(a, b, rel.name));
      for (const v of list) (this.installedNames.has(v.name) ? upgrades : fresh).push(v);
    }
    const all = [...upgrades, ...fresh];
    return all.filter((v, i) => all.indexOf(v) === i);
  }

  private compareProviders(a: PackageRecord, b: PackageRecord, target: string): number {
    const ia = this.installedNames.has(a.name);
    const ib = this.installedNames.has(b.name);
    if (ia !== ib) return ia ? -1 : 1;
    if ((a.name === target) !== (b.name === target)) return a.name === target ? -1 : 1;
    if (a.essential !== b.essential) return a.essential ? -1 : 1;
    const pa = PRIORITY_RANK[a.priority ?? ""] ?? 5;
    const pb = PRIORITY_RANK[b.priority ?? ""] ?? 5;
    if (pa !== pb) return pa - pb;
    return b.id - a.id;
  }

  private critical(rec: PackageRecord): { kind: "pre-depends" | "depends"; group: RelationGroup }[] {
    return [
      ...this.index.relations(rec, "preDepends").map((group) => ({ kind: "pre-depends" as const, group })),
      ...this.index.relations(rec, "depends").map((group) => ({ kind: "depends" as const, group })),
    ];
  }

  /** Marks a package without its dependencies (apt-get's first pass over the request). */
  markOnly(rec: PackageRecord, reason: Reason): void {
    const current = this.state.get(rec.name);
    if (current === rec) return;
    if (current) this.leave(current);
    this.marked.set(rec.name, { rec, reason });
    this.enter(rec);
  }

  /**
   * apt's MarkInstall with auto-install. `fromUser` packages stay marked even when a dependency
   * cannot be satisfied (the problem is reported); dependencies fail early and are unmarked.
   */
  markInstall(cand: PackageRecord, reason: Reason, fromUser: boolean, depth = 0): boolean {
    const name = cand.name;
    const current = this.state.get(name);
    const alreadyMarked = this.marked.get(name)?.rec === cand;
    if (!fromUser && (current === cand || (current && current.version === cand.version))) return true;
    if (depth > 3000) return false;

    if (!fromUser) {
      // IsInstallOkDependenciesSatisfiableByCandidates: a look-ahead of one level.
      for (const { group } of this.critical(cand))
        if (!group.some((r) => this.satisfiedNow(r) || this.satisfiableByCandidate(r))) return false;
    }
    if (!alreadyMarked) this.markOnly(cand, reason);

    const deps: { kind: "pre-depends" | "depends" | "recommends"; group: RelationGroup }[] =
      this.critical(cand);
    if (this.recommends)
      for (const group of this.index.relations(cand, "recommends")) deps.push({ kind: "recommends", group });
    for (const { kind, group } of deps) {
      if (group.some((r) => this.satisfiedNow(r))) continue;
      let found = false;
      for (const sol of this.possibleSolutions(group)) {
        if (this.markInstall(sol, { kind, parent: name, relation: formatGroup(group) }, false, depth + 1)) {
          found = true;
          break;
        }
      }
      if (!found && kind === "recommends") continue; // Recommends are never critical
      if (!found) {
        if (!fromUser) {
          // MarkInstall_DiscardInstall: only this package is unmarked; what it pulled in stays.
          this.marked.delete(name);
          this.leave(cand);
          if (current) this.enter(current);
          return false;
        }
        this.unsatisfied.push({
          package: name,
          relation: formatGroup(group),
          message: `${name} ${kind} on ${formatGroup(group)}, which nothing installable satisfies`,
        });
      }
    }
    return true;
  }

  /** Conflicts and Breaks among the final state. */
  conflicts(): Problem[] {
    const out: Problem[] = [];
    for (const rec of this.state.values()) {
      for (const kind of ["conflicts", "breaks"] as const) {
        for (const group of this.index.relations(rec, kind)) {
          for (const rel of group) {
            const hits: PackageRecord[] = [];
            const real = this.state.get(rel.name);
            if (real && real !== rec && versionOk(real.version, rel)) hits.push(real);
            for (const p of this.provided.get(rel.name) ?? [])
              if (p.pkg !== rec && p.pkg.name !== rec.name && provideOk(p.version, rel)) hits.push(p.pkg);
            for (const h of hits) {
              if (!this.marked.has(rec.name) && !this.marked.has(h.name)) continue; // both pre-existing
              out.push({
                package: rec.name,
                relation: formatRelation(rel),
                message: `${rec.name} ${kind === "breaks" ? "breaks" : "conflicts with"} ${formatRelation(rel)} (${h.name} ${h.version})`,
              });
            }
          }
        }
      }
    }
    return out;
  }
}

function versionOk(version: string, rel: Relation): boolean {
  return !rel.op || satisfies(version, rel.op, rel.version!);
}

/** A versioned dependency is only satisfied by a versioned Provides. */
function provideOk(provided: string | undefined, rel: Relation): boolean {
  if (!rel.op) return true;
  return provided !== undefined && satisfies(provided, rel.op, rel.version!);
}

/** Computes what `apt-get install --no-install-recommends REQUEST` would add to `installed`. */
export function resolve(
  index: PackageIndex,
  request: readonly RequestItem[],
  opts: ResolveOptions = {},
): Resolution {
  const r = new Resolver(index, opts.installed ?? [], opts.recommends ?? false);
  const roots: { rec: PackageRecord; reason: Reason }[] = [];
  const problems: Problem[] = [];

  const addRoot = (name: string, reason: Reason, item?: RequestItem) => {
    const versions = index.allVersions(name);
    let rec: PackageRecord | undefined;
    if (item?.op) rec = versions.find((v) => satisfies(v.version, item.op!, item.version!));
    else rec = index.candidate(name);
    if (!rec) {
      const why =
        versions.length === 0
          ? index.providers(name).length
            ? `${name} is a virtual package; name one of its providers: ${[...new Set(index.providers(name).map((p) => p.pkg.name))].slice(0, 8).join(", ")}`
            : `package ${name} is not in the index`
          : `no version of ${name} satisfies ${item?.op} ${item?.version} (have ${versions.map((v) => v.version).join(", ")})`;
      problems.push({ package: name, relation: name, message: why });
      return;
    }
    roots.push({ rec, reason });
  };

  if (opts.essential)
    for (const n of index.names()) if (index.candidate(n)?.essential) addRoot(n, { kind: "essential" });
  const priorities = new Set([...(opts.priorities ?? []), ...(opts.required ? ["required"] : [])]);
  if (priorities.size)
    for (const n of index.names()) {
      const c = index.candidate(n);
      if (c?.priority && priorities.has(c.priority) && !c.essential) addRoot(n, { kind: "priority" });
    }
  for (const item of request) addRoot(item.name, { kind: "requested" }, item);

  // apt-get marks every requested package first, then installs the dependencies of each.
  for (const { rec, reason } of roots) r.markOnly(rec, reason);
  for (const { rec, reason } of roots) r.markInstall(rec, reason, true);

  const packages: ResolvedPackage[] = [...r.marked.values()].map(({ rec, reason }) => ({
    name: rec.name,
    version: rec.version,
    architecture: rec.architecture,
    source: rec.source,
    installedSize: rec.installedSize,
    reason,
  }));
  return {
    packages,
    installedBytes: packages.reduce((s, p) => s + p.installedSize * 1024, 0),
    unsatisfied: [...problems, ...r.unsatisfied],
    conflicts: r.conflicts(),
  };
}

/** The chain from a requested package down to `name`: [request, ..., name]. */
export function whyChain(res: Resolution, name: string): ResolvedPackage[] | undefined {
  const byName = new Map(res.packages.map((p) => [p.name, p]));
  const chain: ResolvedPackage[] = [];
  let cur = byName.get(name);
  const seen = new Set<string>();
  while (cur && !seen.has(cur.name)) {
    seen.add(cur.name);
    chain.unshift(cur);
    cur = cur.reason.parent ? byName.get(cur.reason.parent) : undefined;
  }
  return chain.length ? chain : undefined;
}
