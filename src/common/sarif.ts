// The SARIF 2.1.0 envelope, built once for every Berth report that code-scanning tools read (scan,
// harden, images). Each caller supplies its rules and results; this file owns the shape: schema,
// version, one run, the tool driver, rule indexes.

import { BERTH_VERSION } from "./version.ts";

export type SarifLevel = "error" | "warning" | "note" | "none";

export interface SarifRule {
  id: string;
  shortDescription: string;
  fullDescription?: string;
  help?: string;
  helpUri?: string;
  properties?: Record<string, unknown>;
}

export interface SarifResult {
  ruleId: string;
  level: SarifLevel;
  message: string;
  locations: unknown[];
  properties?: Record<string, unknown>;
}

export interface SarifRun {
  /** The driver's name, e.g. "berth" or "berth-harden". */
  tool: string;
  informationUri?: string;
  rules: SarifRule[];
  results: SarifResult[];
  properties?: Record<string, unknown>;
}

/** A SARIF log with one run; results point at their rule by id and by index. */
export function sarifLog(run: SarifRun, version: string = BERTH_VERSION): unknown {
  const index = new Map(run.rules.map((r, i) => [r.id, i]));
  return {
    $schema: "https://json.schemastore.org/sarif-2.1.0.json",
    version: "2.1.0",
    runs: [
      {
        tool: {
          driver: {
            name: run.tool,
            informationUri: run.informationUri,
            version,
            rules: run.rules.map((r) => ({
              id: r.id,
              // SARIF's rule name is an identifier: letters and digits only.
              name: r.id.replace(/[^A-Za-z0-9]/g, ""),
              shortDescription: { text: r.shortDescription },
              fullDescription: { text: r.fullDescription ?? r.shortDescription },
              help: r.help !== undefined ? { text: r.help } : undefined,
              helpUri: r.helpUri,
              properties: r.properties,
            })),
          },
        },
        results: run.results.map((r) => ({
          ruleId: r.ruleId,
          ruleIndex: index.get(r.ruleId) ?? -1,
          level: r.level,
          message: { text: r.message },
          locations: r.locations,
          properties: r.properties,
        })),
        properties: run.properties,
      },
    ],
  };
}
