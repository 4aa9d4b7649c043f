// @tufjs/models 5.0.2 builds and serialises the targets map of targets metadata with `reduce` and
// object spread, which copies the map once per target: quadratic. With 1,000 targets that is about
// 100 ms of CPU per parse and per serialisation, and tuf-js serialises again for every signature it
// checks, so a node's refresh with nothing new cost ~220 ms of CPU (bench/repo.ts). These replace the
// two methods with linear versions that produce the same objects and the same JSON (key order
// included); test/repo/tufjs-linear.test.ts compares them with the library's own on real metadata.
// Everything else, and all of TUF's logic, stays the library's. Remove once upstream builds the map
// linearly.
//
// Imported for its effect by the modules that parse or sign metadata (client.ts, repository.ts), so
// tuf-js's Updater, which uses the same @tufjs/models module, gets it too.

import { TargetFile, Targets } from "@tufjs/models";

type TargetsJSON = Parameters<typeof Targets.fromJSON>[0];

export const libraryTargets = {
  toJSON: Targets.prototype.toJSON,
  fromJSON: Targets.fromJSON.bind(Targets),
};

function isObjectRecord(v: unknown): v is Record<string, object> {
  return (
    typeof v === "object" && v !== null && Object.values(v).every((x) => typeof x === "object" && x !== null)
  );
}

if (!(Targets as { berthLinear?: boolean }).berthLinear) {
  (Targets as { berthLinear?: boolean }).berthLinear = true;

  Targets.fromJSON = (data: TargetsJSON): Targets => {
    const { targets, ...rest } = data as TargetsJSON & { targets?: unknown };
    if (targets !== undefined && !isObjectRecord(targets)) throw new TypeError("targets must be an object");
    // The library's own parser for everything but the map (given none), then the map, linearly.
    const out = libraryTargets.fromJSON(rest as TargetsJSON);
    for (const [path, t] of Object.entries(targets ?? {}))
      out.targets[path] = TargetFile.fromJSON(path, t as Parameters<typeof TargetFile.fromJSON>[1]);
    return out;
  };

  Targets.prototype.toJSON = function (this: Targets) {
    // The library's serialiser on a copy without the map (keeps its key order), then the map.
    const bare = Object.assign(Object.create(Object.getPrototypeOf(this)), this, { targets: {} }) as Targets;
    const json = libraryTargets.toJSON.call(bare);
    json.targets = Object.fromEntries(Object.entries(this.targets).map(([p, t]) => [p, t.toJSON()]));
    return json;
  };
}
