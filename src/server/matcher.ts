// The server's view of the advisory database: the same node:sqlite file `berth db` writes, opened
// read-only, matched with src/scan/match.ts (the code `berth scan` runs). Nodes share packages, so the
// server matches each distinct package and kernel once; a node's findings are the union of its
// packages' and kernels', which is what a scan of the node finds, finding for finding.

import { existsSync, statSync } from "node:fs";
import { AdvisoryDb } from "../db/database.ts";
import type { Inventory, InventoryPackage, KernelInfo } from "../scan/inventory.ts";
import { type Finding, matchInventory } from "../scan/match.ts";
import type { Kernel, Package } from "./api-schemas.ts";
import { sha256Hex } from "./signature.ts";

/** One finding as the fleet database keeps it. */
export interface MatchedFinding {
  vulnId: string;
  package: string;
  installed: string;
  severity: string;
  status: string;
  fixedVersion: string | null;
  dataSource: string;
  title: string | null;
  advisory: string | null;
}

const fromFinding = (f: Finding): MatchedFinding => ({
  vulnId: f.vulnId,
  package: f.package,
  installed: f.installed,
  severity: f.severity,
  status: f.status,
  fixedVersion: f.fixedVersion ?? null,
  dataSource: f.dataSource,
  title: f.title ?? null,
  advisory: f.advisory ?? null,
});

export class Matcher {
  readonly path: string;
  private db: AdvisoryDb | undefined;
  private gen = "";
  private inode = 0;
  /** Why the advisory database cannot be used, when it cannot (a newer schema, a broken file). */
  error: string | undefined;

  constructor(path: string) {
    this.path = path;
    this.refresh();
  }

  /** The advisory data's identity: a digest of what each source imported and when ("none": no data). */
  get generation(): string {
    return this.gen;
  }

  /** Re-reads the import record; true when the data changed since the last look. */
  refresh(): boolean {
    const before = this.gen;
    // A database replaced by a rename is a new file: reopen it.
    const inode = existsSync(this.path) ? statSync(this.path).ino : 0;
    if (this.db && inode !== this.inode) {
      this.db.close();
      this.db = undefined;
    }
    this.inode = inode;
    if (!this.db && inode) {
      try {
        this.db = new AdvisoryDb(this.path, { readOnly: true });
        this.error = undefined;
      } catch (e) {
        this.db = undefined;
        this.error = (e as Error).message.split("\n")[0];
      }
    }
    let gen = "none";
    if (this.db) {
      try {
        const rows = this.db.sources();
        gen = rows.length ? sha256Hex(JSON.stringify(rows)).slice(0, 16) : "none";
      } catch (e) {
        this.error = (e as Error).message.split("\n")[0];
        this.db.close();
        this.db = undefined;
      }
    }
    this.gen = gen;
    return gen !== before;
  }

  /**
   * Findings of each package (by index) for one release. Packages are matched in batches where no two
   * share a name and version, so each finding names exactly one of them.
   */
  matchPackages(codename: string, packages: Package[]): MatchedFinding[][] {
    const out: MatchedFinding[][] = packages.map(() => []);
    if (!this.db || !codename) return out;
    let pending = packages.map((p, i) => ({ p, i })).filter(({ p }) => p.status === "installed");
    while (pending.length) {
      const batch = new Map<string, { p: Package; i: number }>();
      const rest: typeof pending = [];
      for (const e of pending) {
        const key = `${e.p.name}\0${e.p.version}`;
        if (batch.has(key)) rest.push(e);
        else batch.set(key, e);
      }
      const inv: Inventory = {
        target: "fleet",
        kind: "host",
        os: { id: "debian", codename },
        packages: [...batch.values()].map(({ p }) => ({ ...p, want: "install" }) as InventoryPackage),
        kernels: [],
      };
      for (const f of matchInventory(this.db, inv, { release: codename })) {
        const hit = batch.get(`${f.package}\0${f.installed}`);
        if (hit) out[hit.i]!.push(fromFinding(f));
      }
      pending = rest;
    }
    return out;
  }

  /** Findings of one kernel for one release. */
  matchKernel(codename: string, kernel: Kernel): MatchedFinding[] {
    if (!this.db) return [];
    const inv: Inventory = {
      target: "fleet",
      kind: "host",
      os: codename ? { id: "debian", codename } : undefined,
      packages: [],
      kernels: [kernel as KernelInfo],
    };
    return matchInventory(this.db, inv, { release: codename }).map(fromFinding);
  }

  close(): void {
    this.db?.close();
    this.db = undefined;
  }
}
