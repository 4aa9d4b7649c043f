// `advisory` targets: one OSV JSON file each (Berth Security Advisories, BSA-YYYY-NNNN), named
// advisories/<id>.json. The custom field repeats the id, modified time and aliases so that a client can
// tell which advisories changed from the signed metadata alone, without downloading them all.

import { readFile } from "node:fs/promises";
import { BerthError } from "../../common/errors.ts";
import type { NewTarget } from "../targets.ts";

export interface AdvisoryCustom {
  kind: "advisory";
  id: string;
  modified: string;
  aliases: string[];
  [k: string]: unknown;
}

/** Checks the few OSV fields the repository relies on and describes the target. */
export async function describeAdvisory(file: string, o: { name?: string } = {}): Promise<NewTarget[]> {
  let doc: { id?: unknown; modified?: unknown; aliases?: unknown };
  try {
    doc = JSON.parse(await readFile(file, "utf8")) as typeof doc;
  } catch (e) {
    throw new BerthError(`${file}: not an OSV JSON file (${(e as Error).message.split("\n")[0]})`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new BerthError(`${file}: not an OSV JSON file (not an object)`);
  if (typeof doc.id !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(doc.id))
    throw new BerthError(`${file}: OSV "id" is missing or not a plain identifier`);
  if (typeof doc.modified !== "string" || Number.isNaN(Date.parse(doc.modified)))
    throw new BerthError(`${file}: OSV "modified" is missing or not an RFC 3339 time`);
  const aliases = Array.isArray(doc.aliases)
    ? doc.aliases.filter((a): a is string => typeof a === "string")
    : [];
  const custom: AdvisoryCustom = { kind: "advisory", id: doc.id, modified: doc.modified, aliases };
  return [{ name: o.name ?? `advisories/${doc.id}.json`, file, custom }];
}
