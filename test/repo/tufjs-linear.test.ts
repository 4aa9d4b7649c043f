// The linear targets (de)serialisation (src/repo/tufjs-linear.ts) against @tufjs/models' own methods:
// the same JSON, byte for byte and in key order, and equal objects, on the metadata of a repository
// with 1,000 targets and custom fields, with delegations, and the same refusal of a malformed map.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Targets } from "@tufjs/models";
import { libraryTargets } from "../../src/repo/tufjs-linear.ts";

function sample(withDelegations: boolean) {
  const targets: Record<string, unknown> = {};
  for (let i = 0; i < 1000; i++)
    targets[`advisories/BSA-2026-${String(i).padStart(4, "0")}.json`] = {
      length: 1000 + i,
      hashes: { sha256: i.toString(16).padStart(64, "0") },
      custom: { kind: "advisory", id: `BSA-2026-${i}`, aliases: [`CVE-2026-${i}`] },
    };
  return {
    _type: "targets",
    spec_version: "1.0.31",
    version: 7,
    expires: "2027-03-01T00:00:00Z",
    targets,
    x_berth_note: "an unrecognised field survives",
    ...(withDelegations
      ? {
          delegations: {
            keys: {},
            roles: [{ name: "bins-0", keyids: [], threshold: 1, terminating: true, paths: ["advisories/*"] }],
          },
        }
      : {}),
  };
}

test("same JSON and equal objects as @tufjs/models' own methods", () => {
  for (const withDelegations of [false, true]) {
    const data = sample(withDelegations) as unknown as Parameters<typeof Targets.fromJSON>[0];
    const ours = Targets.fromJSON(data);
    const theirs = libraryTargets.fromJSON(data);
    assert.ok(ours.equals(theirs));
    assert.equal(Object.keys(ours.targets).length, 1000);
    assert.equal(JSON.stringify(ours.toJSON()), JSON.stringify(libraryTargets.toJSON.call(theirs)));
    // Without delegations the round trip gives back the input itself (the library orders delegation
    // fields its own way).
    if (!withDelegations) assert.equal(JSON.stringify(ours.toJSON()), JSON.stringify(data));
  }
});

test("a malformed targets map is refused as the library refuses it", () => {
  for (const bad of [[1, 2], "x", { a: 1 }, { a: null }]) {
    const data = { ...sample(false), targets: bad } as unknown as Parameters<typeof Targets.fromJSON>[0];
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return `${(e as Error).name}: ${(e as Error).message}`;
      }
      return "accepted";
    };
    assert.equal(
      err(() => Targets.fromJSON(data)),
      err(() => libraryTargets.fromJSON(data)),
      JSON.stringify(bad),
    );
  }
});
