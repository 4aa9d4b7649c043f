// berth scan and berth db: a warm scan of this host and of a docker-save image archive, each beside a
// peer that reads the same inventory (dpkg-query; GNU tar pulling the status file out of the layers),
// and the database build time per source beside reading the same input (gzip -dc / cat). Goal: the
// warm host scan under 0.5 s. Also the precision and recall of the fixed versions read from the
// archive's changelogs, judged by the Debian tracker's data in ../shared/data/debian-tracker (the DSA
// list for bullseye, the JSON sample for bullseye, bookworm, trixie and sid), beside the rule Berth
// used before (every CVE an upload names, credited to the oldest version naming it).

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Judgement,
  type ReleaseTruth,
  score,
  truthFromAdvisoryList,
  truthFromTrackerJson,
} from "../src/db/changelog-precision.ts";
import { parseAdvisoryList } from "../src/db/importers/dsa-list.ts";
import { creditEveryMention, judgeRelease, releaseChangelogs } from "../src/db/tracker-agreement.ts";
import { compareVersions } from "../src/pkg/version.ts";
import { printTable } from "./lib.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BERTH = join(ROOT, "bin/berth");
const DATA = join(ROOT, "../shared/data");
const dir = mkdtempSync(join(tmpdir(), "berth-bench-scan-"));
const db = join(dir, "db.sqlite");

function time(cmd: string, args: string[], runs = 1): number {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(cmd, args, {
      stdio: ["ignore", "ignore", "pipe"],
      encoding: "utf8",
      maxBuffer: 1 << 30,
    });
    t.push((performance.now() - t0) / 1000);
    if (r.status !== 0 && r.status !== 1)
      throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.slice(-400)}`);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)]!;
}

try {
  // Database build, one source at a time, beside just reading its input.
  const sources: [string, string[], string, string[]][] = [
    [
      "debian-tracker (sample)",
      [`debian-tracker=${DATA}/debian-tracker/tracker-sample.json`],
      "cat",
      [`${DATA}/debian-tracker/tracker-sample.json`],
    ],
    [
      "debian-dsa",
      [`debian-dsa=${DATA}/debian-tracker/DSA.list`],
      "cat",
      [`${DATA}/debian-tracker/DSA.list`],
    ],
    [
      "debian-dla",
      [`debian-dla=${DATA}/debian-tracker/DLA.list`],
      "cat",
      [`${DATA}/debian-tracker/DLA.list`],
    ],
    [
      "kernel-cna",
      [`kernel-cna=${DATA}/kernel-cna/cves.jsonl.gz`],
      "gzip",
      ["-dc", `${DATA}/kernel-cna/cves.jsonl.gz`],
    ],
    [
      "kernel-streams",
      [
        `kernel-streams=${DATA}/linux-kernel-cves/stream_fixes.json.gz`,
        "--cves-txt",
        `${DATA}/linux-kernel-cves/CVEs.txt`,
      ],
      "gzip",
      ["-dc", `${DATA}/linux-kernel-cves/stream_fixes.json.gz`],
    ],
    [
      "debian-archive (this host's pending updates)",
      ["debian-archive", "--target", "host"],
      "dpkg-query",
      ["-W"],
    ],
  ];
  const dbRows = sources.map(([name, src, peer, peerArgs]) => {
    const args = [
      "db",
      "update",
      "--db",
      db,
      "-q",
      ...src.flatMap((s, i) => (i === 0 ? ["--source", s] : [s])),
    ];
    return {
      metric: `db update: ${name}`,
      berth: time(BERTH, args),
      peer: time(peer, peerArgs),
      peerName: `${peer} (read the input only)`,
      unit: "s",
      higherIsBetter: false,
    };
  });

  // Warm host scan (one untimed run first), median of 5.
  time(BERTH, ["scan", "host", "--db", db, "--json", "-q"]);
  const host = time(BERTH, ["scan", "host", "--db", db, "--json", "-q"], 5);
  const dpkg = time(
    "dpkg-query",
    ["-W", "-f", "${Package} ${Version} ${source:Package} ${source:Version}\\n"],
    5,
  );

  // An image archive: a trixie minbase root from mmdebstrap, imported and saved by Docker.
  const root = join(dir, "root.tar");
  const mm = spawnSync("mmdebstrap", ["--variant=minbase", "--quiet", "trixie", root], { stdio: "ignore" });
  if (mm.status !== 0) throw new Error("mmdebstrap failed");
  spawnSync("sh", [
    "-c",
    `docker import ${root} berth-bench-scan:1 >/dev/null && docker save -o ${dir}/image.tar berth-bench-scan:1`,
  ]);
  time(BERTH, ["scan", join(dir, "image.tar"), "--db", db, "--json", "-q"]);
  const image = time(BERTH, ["scan", join(dir, "image.tar"), "--db", db, "--json", "-q"], 5);
  const tarPeer = time(
    "sh",
    [
      "-c",
      `cd ${dir} && mkdir -p x && tar -xf image.tar -C x && for l in $(find x -name '*.tar' -o -path '*/blobs/sha256/*' -type f); do tar -xOf "$l" var/lib/dpkg/status 2>/dev/null; done | grep -c '^Package:'; rm -rf x`,
    ],
    5,
  );
  spawnSync("docker", ["rmi", "-f", "berth-bench-scan:1"], { stdio: "ignore" });

  const packages = spawnSync("dpkg-query", ["-W"], { encoding: "utf8" }).stdout.trim().split("\n").length;
  console.log(`this host: ${packages} packages; image: trixie minbase`);
  printTable("scan: warm scans beside a peer reading the same inventory", [
    {
      metric: `berth scan host (${packages} packages, matched)`,
      berth: host,
      peer: dpkg,
      peerName: "dpkg-query -W (inventory only)",
      unit: "s",
      higherIsBetter: false,
    },
    {
      metric: "berth scan image.tar (docker save)",
      berth: image,
      peer: tarPeer,
      peerName: "GNU tar: status out of every layer",
      unit: "s",
      higherIsBetter: false,
    },
  ]);
  printTable("db: build time per source", dbRows);

  // Changelog crediting against the tracker.
  const T = `${DATA}/debian-tracker`;
  const tracker = JSON.parse(readFileSync(`${T}/tracker-sample.json`, "utf8"));
  const dsa = parseAdvisoryList(readFileSync(`${T}/DSA.list`, "utf8"), "DSA.list");
  const json = (r: string, into?: ReleaseTruth) => truthFromTrackerJson(tracker, r, compareVersions, into);
  const plans: [string, ReleaseTruth[]][] = [
    ["bullseye", [json("bullseye", truthFromAdvisoryList(dsa, "bullseye", compareVersions))]],
    ["bookworm", [json("bookworm")]],
    ["trixie", [json("trixie"), json("sid")]],
  ];
  const now: Judgement[] = [];
  const before: Judgement[] = [];
  let changelogs = 0;
  for (const [suite, truths] of plans) {
    const read = await releaseChangelogs(suite, new Set(truths.flatMap((t) => [...t.verdicts.keys()])));
    changelogs += read.changelogs.size;
    for (const t of truths) {
      now.push(...judgeRelease(read, t));
      before.push(...judgeRelease(read, t, creditEveryMention));
    }
  }
  const a = score(now);
  const b = score(before);
  console.log(
    `changelogs read: ${changelogs}; tracker verdicts judged: ${a.truePositives + a.falseNegatives} fixed, TP/FP/FN berth ${a.truePositives}/${a.falsePositives}/${a.falseNegatives}, before ${b.truePositives}/${b.falsePositives}/${b.falseNegatives}`,
  );
  printTable("scan: changelog fixed versions against the Debian tracker", [
    {
      metric: "precision",
      berth: a.precision,
      peer: b.precision,
      peerName: "every mention, oldest version",
      unit: "",
      higherIsBetter: true,
    },
    {
      metric: "recall",
      berth: a.recall,
      peer: b.recall,
      peerName: "every mention, oldest version",
      unit: "",
      higherIsBetter: true,
    },
  ]);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
