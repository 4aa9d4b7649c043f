// The result `berth scan` and `berth images scan` print (table, JSON, SARIF): what was scanned, what
// matched, and the advisory data it was matched against. Both commands build it here so their output
// keeps the same shape.

import type { AdvisoryDb } from "../db/database.ts";
import { type ScanResult, summarize } from "../scan/formats.ts";
import type { Inventory } from "../scan/inventory.ts";
import type { Finding } from "../scan/match.ts";

/** The result for one target: its inventory, the findings to report, and the database's sources. */
export function scanResultOf(inv: Inventory, findings: Finding[], db: AdvisoryDb): ScanResult {
  return {
    target: inv.target,
    kind: inv.kind,
    os: inv.os,
    kernels: inv.kernels,
    packages: inv.packages.length,
    layers: inv.layers,
    findings,
    summary: summarize(findings, inv.packages.length),
    database: {
      path: db.path,
      sources: db.sources().map(({ name, imported_at, records }) => ({ name, imported_at, records })),
    },
  };
}
