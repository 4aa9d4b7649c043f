// berth repo on the publisher's side, checked with oracles outside Berth and tuf-js: key files and their
// modes (stat), every signature of every role verified by openssl over canonical JSON that python3
// computes, key ids recomputed the same way; then the served repository read back through the real
// client (RepoClient over HTTP), publish after publish, and refresh.

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { initRepository, publish, refresh } from "../../src/repo/publish.ts";
import type { ServedRepository } from "../../src/repo/serve.ts";
import { verifyRepository } from "../../src/repo/verify.ts";
import { berth, isOneLineError, runSync, tempDir } from "../helpers.ts";
import { serveTestRepository, testClient } from "../shared/repo.ts";

/**
 * Verifies every signature in a metadata file against the keys and thresholds of `root`, with python3
 * computing the canonical JSON (sorted keys, no spaces) and openssl checking Ed25519. Returns, per
 * role, how many distinct trusted keys signed.
 */
function opensslVerify(metaFile: string, rootFile: string, role: string, work: string): number {
  const py = `
import json, sys, hashlib
meta = json.load(open(sys.argv[1])); root = json.load(open(sys.argv[2]))["signed"]; role = sys.argv[3]
canon = lambda o: json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
open(sys.argv[4] + "/signed.bin", "wb").write(canon(meta["signed"]))
for kid, k in root["keys"].items():
    assert hashlib.sha256(canon(k)).hexdigest() == kid, "key id is not the hash of the key"
for i, s in enumerate(meta["signatures"]):
    if s["keyid"] not in root["roles"][role]["keyids"]: continue
    pub = bytes.fromhex(root["keys"][s["keyid"]]["keyval"]["public"])
    der = bytes.fromhex("302a300506032b6570032100") + pub
    open(f"{sys.argv[4]}/k{i}.der", "wb").write(der)
    open(f"{sys.argv[4]}/s{i}.bin", "wb").write(bytes.fromhex(s["sig"]))
    print(i)
`;
  const r = runSync("python3", ["-c", py, metaFile, rootFile, role, work]);
  assert.equal(r.code, 0, r.stderr);
  let good = 0;
  for (const i of r.stdout.trim().split("\n").filter(Boolean)) {
    const v = runSync("openssl", [
      "pkeyutl",
      "-verify",
      "-pubin",
      "-keyform",
      "DER",
      "-inkey",
      join(work, `k${i}.der`),
      "-rawin",
      "-in",
      join(work, "signed.bin"),
      "-sigfile",
      join(work, `s${i}.bin`),
    ]);
    if (v.code === 0 && /Signature Verified Successfully/.test(v.stdout)) good++;
  }
  return good;
}

describe("berth repo publisher", () => {
  const work = tempDir("berth-repo-pub-");
  const dir = join(work, "repo");
  const meta = join(dir, "repository/metadata");
  let served: ServedRepository;

  before(async () => {
    const r = await berth(["repo", "init", dir, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    served = await serveTestRepository(dir);
  });
  after(() => served?.close());

  test("init: one Ed25519 key file per key, mode 0600 in 0700 directories; root 2 of 3", () => {
    const roles = readdirSync(join(dir, "keys")).sort();
    assert.deepEqual(roles, ["root", "snapshot", "targets", "timestamp"]);
    assert.equal(statSync(join(dir, "keys")).mode & 0o777, 0o700);
    for (const role of roles) {
      assert.equal(statSync(join(dir, "keys", role)).mode & 0o777, 0o700, role);
      for (const f of readdirSync(join(dir, "keys", role)))
        assert.equal(statSync(join(dir, "keys", role, f)).mode & 0o777, 0o600, `${role}/${f}`);
    }
    assert.equal(readdirSync(join(dir, "keys/root")).length, 3);
    const root = JSON.parse(readFileSync(join(meta, "1.root.json"), "utf8"));
    assert.equal(root.signed.roles.root.threshold, 2);
    assert.equal(root.signed.roles.root.keyids.length, 3);
    assert.equal(root.signed.consistent_snapshot, true);
    // Default expiries: root a year, timestamp a day (from now, give or take the run).
    const days = (e: string) => (Date.parse(e) - Date.now()) / 86400_000;
    assert.ok(days(root.signed.expires) > 364 && days(root.signed.expires) < 367);
    const ts = JSON.parse(readFileSync(join(meta, "timestamp.json"), "utf8"));
    assert.ok(days(ts.signed.expires) > 0.95 && days(ts.signed.expires) <= 1.01);
  });

  test("every role's signatures verify with openssl over python's canonical JSON", () => {
    const root = join(meta, "1.root.json");
    assert.equal(opensslVerify(root, root, "root", work), 3);
    assert.equal(opensslVerify(join(meta, "timestamp.json"), root, "timestamp", work), 1);
    assert.equal(opensslVerify(join(meta, "1.snapshot.json"), root, "snapshot", work), 1);
    assert.equal(opensslVerify(join(meta, "1.targets.json"), root, "targets", work), 1);
    // A changed byte in the signed part breaks the signature (the oracle can fail).
    const t = JSON.parse(readFileSync(join(meta, "timestamp.json"), "utf8"));
    t.signed.version += 1;
    writeFileSync(join(work, "forged.json"), JSON.stringify(t));
    assert.equal(opensslVerify(join(work, "forged.json"), root, "timestamp", work), 0);
  });

  test("add + publish: the client over HTTP sees the target with its custom field, bytes verified", async () => {
    const osv = join(work, "BSA-2026-0001.json");
    writeFileSync(
      osv,
      JSON.stringify({ id: "BSA-2026-0001", modified: "2026-12-01T00:00:00Z", aliases: ["CVE-2026-0001"] }),
    );
    const add = await berth(["repo", "add", dir, "advisory", osv]);
    assert.equal(add.code, 0, add.stderr);
    const pub = await berth(["repo", "publish", dir, "--json"]);
    assert.equal(pub.code, 0, pub.stderr);
    assert.deepEqual(JSON.parse(pub.stdout).added, ["advisories/BSA-2026-0001.json"]);
    const client = testClient(served.url, join(meta, "1.root.json"));
    await client.refresh();
    const list = await client.targets("advisory");
    assert.deepEqual(
      list.map((t) => [t.name, t.custom.id, t.length]),
      [["advisories/BSA-2026-0001.json", "BSA-2026-0001", statSync(osv).size]],
    );
    assert.deepEqual(await client.targets("image"), []);
    const out = join(work, "dl/a.json");
    await client.download("advisories/BSA-2026-0001.json", out);
    assert.equal(readFileSync(out, "utf8"), readFileSync(osv, "utf8"));
    // The file is served under its hash (consistent snapshots).
    const sha = runSync("sha256sum", [osv]).stdout.split(" ")[0];
    assert.ok(
      served.log.some((l) => l.path === `/targets/advisories/${sha}.BSA-2026-0001.json` && l.status === 200),
    );
  });

  test("a name already published with other bytes is refused unless --replace", async () => {
    const osv = join(work, "BSA-2026-0001.json");
    writeFileSync(osv, JSON.stringify({ id: "BSA-2026-0001", modified: "2026-12-02T00:00:00Z" }));
    const r = await berth(["repo", "add", dir, "advisory", osv]);
    assert.equal(r.code, 2);
    assert.ok(isOneLineError(r.stderr), r.stderr);
    assert.match(r.stderr, /already exists with other content/);
    const ok = await berth(["repo", "add", dir, "advisory", osv, "--replace", "--publish"]);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test("refresh re-signs the timestamp only; a node refreshing with nothing new fetches two small files", async () => {
    const cache = join(work, "node-cache");
    const trusted = join(meta, "1.root.json");
    await testClient(served.url, trusted, cache).refresh();
    const before = JSON.parse(readFileSync(join(meta, "timestamp.json"), "utf8")).signed;
    const r = await refresh(dir);
    assert.equal(r.snapshotVersion, undefined, "refresh re-signed a snapshot that was far from expiry");
    const now = JSON.parse(readFileSync(join(meta, "timestamp.json"), "utf8")).signed;
    assert.equal(now.version, before.version + 1);
    assert.equal(now.meta["snapshot.json"].version, before.meta["snapshot.json"].version);
    const node = testClient(served.url, trusted, cache);
    await node.refresh();
    // The TUF spec's probe for the next root (404) and the new timestamp; snapshot and targets come
    // from the node's cache, verified.
    assert.deepEqual(
      node.fetcher.log.map((l) => [l.url.slice(served.url.length), l.status]),
      [
        ["/metadata/2.root.json", 404],
        ["/metadata/timestamp.json", 200],
      ],
    );
    assert.ok(node.fetcher.log[1]!.bytes < 1024);
    assert.equal((await node.state()).timestamp.version, now.version);
  });

  test("berth repo verify: every target accepted, over HTTP and from a directory", async () => {
    const r = await berth([
      "repo",
      "verify",
      served.url,
      "--trusted-root",
      join(meta, "1.root.json"),
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const fromDir = await verifyRepository({ url: dir, trustedRoot: join(meta, "1.root.json") });
    for (const rep of [JSON.parse(r.stdout) as typeof fromDir, fromDir]) {
      assert.equal(rep.refused, 0);
      assert.deepEqual(
        rep.targets.map((t) => t.status),
        ["ok"],
      );
    }
    assert.match(fromDir.url, /^file:\/\//);
  });

  test("offline keys: root and targets keys elsewhere; refresh needs only the online keys", async () => {
    const d = join(work, "offline-repo");
    const off = join(work, "usb");
    await initRepository(d, { offlineKeys: off });
    assert.deepEqual(readdirSync(join(d, "keys")).sort(), ["snapshot", "timestamp"]);
    assert.deepEqual(readdirSync(off).sort(), ["root", "targets"]);
    await assert.rejects(
      publish(d),
      /^BerthError: targets: 0 of the 1 signing keys it needs are at hand .*pass --keys DIR/,
    );
    const r = await publish(d, { keyDirs: [off] });
    assert.equal(r.targetsVersion, 2);
    assert.equal((await refresh(d)).timestampVersion, 3);
  });

  test("nodes refreshing one cache at the same time all succeed and leave it whole", async () => {
    const cache = join(work, "shared-cache");
    const trusted = join(meta, "1.root.json");
    const runs = await Promise.allSettled(
      Array.from({ length: 6 }, () => testClient(served.url, trusted, cache).refresh()),
    );
    assert.deepEqual(
      runs.map((r) => r.status),
      Array(6).fill("fulfilled"),
    );
    const after = testClient(served.url, trusted, cache);
    await after.refresh();
    assert.equal(after.fetcher.log.length, 2, "the cache was left incomplete");
  });

  test("bad input: one line, exit 2", async () => {
    const cases = [
      ["repo", "init", dir],
      ["repo", "add", dir, "tarball", "x"],
      ["repo", "add", join(work, "nope"), "advisory", "x"],
      ["repo", "init", join(work, "n2"), "--root-threshold", "4"],
      ["repo", "init", join(work, "n3"), "--expires", "timestamp=3m"],
      ["repo", "serve", dir, "--listen", "nowhere"],
      ["repo", "rotate", dir, "--role", "admin"],
      ["repo", "verify", dir, "--trusted-root", join(work, "missing-root.json")],
    ];
    const results = await Promise.all(cases.map((args) => berth(args)));
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 2, `${cases[i]!.join(" ")}: ${r.stderr}`);
      assert.ok(isOneLineError(r.stderr), r.stderr);
    }
    // Nothing half-made by the refused inits.
    assert.equal(existsSync(join(work, "n2")), false);
    assert.equal(existsSync(join(work, "n3")), false);
  });
});
