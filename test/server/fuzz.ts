// Fuzzed variants of a valid report, for the report endpoint's fuzz test.

import { randomBytes } from "node:crypto";
import type { Report } from "../../src/server/api-schemas.ts";

/** A fuzzed variant of a valid report: fields removed, retyped, stretched, nested, or raw garbage. */
export function fuzzBody(r: () => number, valid: Report): string {
  const v = structuredClone(valid) as unknown as Record<string, unknown>;
  const weird: unknown[] = [
    null,
    -1,
    2 ** 60,
    1e308,
    "",
    "x".repeat(5000),
    "\u0000",
    "\ud800",
    [],
    {},
    true,
    [[[[[]]]]],
    { __proto__: { admin: true } },
    "💥",
  ];
  const keys = Object.keys(v);
  switch (Math.floor(r() * 8)) {
    case 0:
      delete v[keys[Math.floor(r() * keys.length)]!];
      break;
    case 1:
      v[keys[Math.floor(r() * keys.length)]!] = weird[Math.floor(r() * weird.length)];
      break;
    case 2: {
      const pk = (v.packages as { set: Record<string, unknown>[] }).set;
      const p = pk[Math.floor(r() * pk.length)]!;
      const f = Object.keys(p)[Math.floor(r() * 6)]!;
      p[f] = weird[Math.floor(r() * weird.length)];
      break;
    }
    case 3:
      v[`extra${Math.floor(r() * 10)}`] = 1;
      break;
    case 4:
      return "[".repeat(1 + Math.floor(r() * 50000));
    case 5: {
      const s = JSON.stringify(v);
      return s.slice(0, Math.floor(r() * s.length));
    }
    case 6:
      return randomBytes(1 + Math.floor(r() * 2000)).toString("latin1");
    default: {
      const ct = (v.containers as { set: Record<string, unknown>[] }).set;
      ct.push({ ...ct[0]! });
      break;
    }
  }
  return JSON.stringify(v);
}
