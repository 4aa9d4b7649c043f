// Precision and recall of the fixed versions Berth reads from the archive's changelogs, measured against
// the Debian security tracker's own data in ../shared/data/debian-tracker: the DSA list's verdicts for
// bullseye (every source package with a bullseye DSA; the list ends in 2023, so bullseye is the release
// it covers) and the tracker JSON sample's verdicts for bullseye, bookworm, trixie and sid (judged on
// trixie's changelogs, which are unstable's line). The changelogs are the real ones from the mirror.
// The floor is one that the previous rule (every CVE an upload names, credited to the oldest version
// naming it) does not reach; the same figures are printed by bench/scan.ts.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  type Judgement,
  type ReleaseTruth,
  score,
  truthFromAdvisoryList,
  truthFromTrackerJson,
} from "../../src/db/changelog-precision.ts";
import { parseAdvisoryList } from "../../src/db/importers/dsa-list.ts";
import { creditEveryMention, judgeRelease, releaseChangelogs } from "../../src/db/tracker-agreement.ts";
import { compareVersions } from "../../src/pkg/version.ts";
import { SHARED_DATA } from "../helpers.ts";

const DATA = join(SHARED_DATA, "debian-tracker");
const PRECISION_FLOOR = 0.88;
const RECALL_FLOOR = 0.72;

test("changelog crediting agrees with the Debian tracker: precision and recall above the floor", async () => {
  const tracker = JSON.parse(readFileSync(join(DATA, "tracker-sample.json"), "utf8"));
  const dsa = parseAdvisoryList(readFileSync(join(DATA, "DSA.list"), "utf8"), "DSA.list");
  const fromJson = (release: string, into?: ReleaseTruth) =>
    truthFromTrackerJson(tracker, release, compareVersions, into);
  const plans: { suite: string; truths: ReleaseTruth[] }[] = [
    {
      suite: "bullseye",
      truths: [fromJson("bullseye", truthFromAdvisoryList(dsa, "bullseye", compareVersions))],
    },
    { suite: "bookworm", truths: [fromJson("bookworm")] },
    { suite: "trixie", truths: [fromJson("trixie"), fromJson("sid")] },
  ];
  const berth: Judgement[] = [];
  const before: Judgement[] = [];
  let packages = 0;
  for (const { suite, truths } of plans) {
    const wanted = new Set(truths.flatMap((t) => [...t.verdicts.keys()]));
    const read = await releaseChangelogs(suite, wanted);
    packages += read.changelogs.size;
    // The mirror serves a changelog for nearly every package the tracker names in this release.
    assert.ok(
      read.changelogs.size >= wanted.size * 0.9,
      `${suite}: ${read.changelogs.size} of ${wanted.size}`,
    );
    for (const t of truths) {
      berth.push(...judgeRelease(read, t));
      before.push(...judgeRelease(read, t, creditEveryMention));
    }
  }
  const now = score(berth);
  const old = score(before);
  const line = (s: typeof now) =>
    `precision ${s.precision.toFixed(3)}, recall ${s.recall.toFixed(3)} (TP ${s.truePositives}, FP ${s.falsePositives}, FN ${s.falseNegatives})`;
  process.stdout.write(`# ${packages} changelogs; berth: ${line(now)}; every-mention rule: ${line(old)}\n`);
  assert.ok(now.truePositives + now.falseNegatives > 1000, "too few tracker verdicts were judged");
  assert.ok(now.precision >= PRECISION_FLOOR, `precision ${now.precision} below ${PRECISION_FLOOR}`);
  assert.ok(now.recall >= RECALL_FLOOR, `recall ${now.recall} below ${RECALL_FLOOR}`);
  // The floor means something: the rule it replaced is below it.
  assert.ok(old.precision < PRECISION_FLOOR || old.recall < RECALL_FLOOR, line(old));
});
