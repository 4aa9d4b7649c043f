// The attacks from issue 12, each against a repository served on loopback and the real client path a
// node uses (RepoClient -> tuf-js Updater -> HTTP). The attacker controls the mirror (a copy of the
// served tree it may change) and, where the attack needs it, the online keys (timestamp and snapshot);
// never the offline root and targets keys. Every refusal must be one line naming the role and the
// reason, and nothing may be trusted, cached or written: the node's cache is compared byte for byte
// before and after, the download destination must not exist, and the node still updates from the
// honest repository afterwards.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  Metadata,
  MetadataKind,
  MetaFile,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from "@tufjs/models";
import { sha256Hex } from "../../src/common/hash.ts";
import { RepoClient, RepoRefusal } from "../../src/repo/client.ts";
import { generateKey, loadKeys, type SigningKey, signerOf } from "../../src/repo/keys.ts";
import { publish, refresh } from "../../src/repo/publish.ts";
import { metadataBytes } from "../../src/repo/repository.ts";
import type { ServedRepository } from "../../src/repo/serve.ts";
import { stageTargets } from "../../src/repo/stage.ts";
import { berth, tempDir } from "../helpers.ts";
import {
  freshTestRepository,
  mirrorOf,
  serveTestRepository,
  type TestRepository,
  testClient,
} from "../shared/repo.ts";

type AnyMeta = Metadata<Root | Targets | Snapshot | Timestamp>;

const PAYLOAD = "advisories/BSA-2026-0099.json";

describe("berth repo attacks", () => {
  const work = tempDir("berth-repo-attacks-");
  let repo: TestRepository;
  let honest: ServedRepository;
  let keys: Map<string, SigningKey>;
  const servers: { close(): Promise<void> }[] = [];
  /** timestamp.json and N.snapshot.json bytes as published at each step, for replays. */
  const oldTimestamps: Buffer[] = [];

  const meta = (tree: string) => join(tree, "metadata");
  const read = (file: string) =>
    JSON.parse(readFileSync(file, "utf8")) as Parameters<typeof Metadata.fromJSON>[1];
  const rootMd = () =>
    Metadata.fromJSON(MetadataKind.Root, read(join(repo.dir, "repository/metadata/root.json")));
  const roleKeys = (role: string) => rootMd().signed.roles[role]!.keyIDs.map((id) => keys.get(id)!);

  function sign(md: AnyMeta, by: SigningKey[]): void {
    md.signatures = {};
    for (const k of by) md.sign(signerOf(k), true);
  }
  function write(file: string, md: AnyMeta): MetaFile {
    const bytes = metadataBytes(md);
    writeFileSync(file, bytes);
    return new MetaFile({
      version: md.signed.version,
      length: bytes.length,
      hashes: { sha256: sha256Hex(bytes) },
    });
  }
  const versionOf = (tree: string, role: "snapshot" | "targets") => {
    const ts = read(join(meta(tree), "timestamp.json")) as {
      signed: { meta: Record<string, { version: number }> };
    };
    const snap = ts.signed.meta["snapshot.json"]!.version;
    if (role === "snapshot") return snap;
    const s = read(join(meta(tree), `${snap}.snapshot.json`)) as {
      signed: { meta: Record<string, { version: number }> };
    };
    return s.signed.meta["targets.json"]!.version;
  };

  /**
   * What an attacker holding the online keys can do: a new snapshot recording the bytes of
   * `targetsFile` (as it is in the mirror) and a new timestamp recording that snapshot.
   */
  function rechain(
    tree: string,
    targetsFile: string,
    o: { snapshotVersion?: number; targetsVersion?: number } = {},
  ) {
    const bytes = readFileSync(join(meta(tree), targetsFile));
    const tVersion = o.targetsVersion ?? Number(targetsFile.split(".")[0]);
    const sVersion = o.snapshotVersion ?? versionOf(tree, "snapshot") + 1;
    const snap = Metadata.fromJSON(
      MetadataKind.Snapshot,
      read(join(meta(tree), `${versionOf(tree, "snapshot")}.snapshot.json`)),
    );
    const s = snap.signed as unknown as { version: number; meta: Record<string, MetaFile> };
    s.version = sVersion;
    s.meta["targets.json"] = new MetaFile({
      version: tVersion,
      length: bytes.length,
      hashes: { sha256: sha256Hex(bytes) },
    });
    sign(snap, roleKeys("snapshot"));
    const snapMeta = write(join(meta(tree), `${sVersion}.snapshot.json`), snap);
    retimestamp(tree, snapMeta);
  }
  function retimestamp(tree: string, snapMeta?: MetaFile, by = roleKeys("timestamp")) {
    const ts = Metadata.fromJSON(MetadataKind.Timestamp, read(join(meta(tree), "timestamp.json")));
    const t = ts.signed as unknown as { version: number; snapshotMeta: MetaFile };
    t.version += 10;
    if (snapMeta) t.snapshotMeta = snapMeta;
    sign(ts, by);
    write(join(meta(tree), "timestamp.json"), ts);
  }

  /** A copy of the honest served tree for the attacker to change. */
  function mirror(): string {
    return mirrorOf(repo.dir, work);
  }
  async function serve(tree: string): Promise<string> {
    const s = await serveTestRepository(tree);
    servers.push(s);
    return s.url;
  }

  /** A node that has refreshed against the honest repository: its cache holds what it trusts. */
  async function node() {
    const cache = join(mkdtempSync(join(work, "node-")), "cache");
    await testClient(honest.url, repo.trustedRoot, cache).refresh();
    return cache;
  }
  /** A node that has only its trust anchor (nothing cached yet). */
  const newNode = () => join(mkdtempSync(join(work, "node-")), "cache");
  const cacheBytes = (cache: string) => {
    const d = join(cache, "metadata");
    if (!existsSync(d)) return {};
    return Object.fromEntries(
      readdirSync(d)
        .sort()
        .map((f) => [f, sha256Hex(readFileSync(join(d, f)))]),
    );
  };

  /** Runs the node against `url`; expects a refusal matching `want`; checks nothing was kept. */
  async function refused(
    url: string,
    cache: string,
    want: RegExp,
    o: { download?: string } = {},
  ): Promise<string> {
    const before = cacheBytes(cache);
    const client = testClient(url, repo.trustedRoot, cache);
    const dest = join(work, `dest-${randomBytes(4).toString("hex")}`);
    let err: unknown;
    try {
      await client.refresh();
      if (o.download) await client.download(o.download, dest);
    } catch (e) {
      err = e;
    }
    assert.ok(
      err instanceof RepoRefusal,
      `expected ${want}, got ${err === undefined ? "success" : String(err)}`,
    );
    const line = (err as Error).message;
    process.stderr.write(`# ${line}\n`);
    assert.match(line, want);
    assert.equal(line.split("\n").length, 1);
    // A new node's cache holds its anchor after any run; nothing else may have arrived.
    const expected = Object.keys(before).length
      ? before
      : { "root.json": sha256Hex(readFileSync(repo.trustedRoot)) };
    assert.deepEqual(cacheBytes(cache), expected, "the refused metadata reached the node's cache");
    assert.equal(existsSync(dest), false, "a refused download reached its destination");
    assert.deepEqual(
      readdirSync(work).filter((f) => f.startsWith(".dest-")),
      [],
      "a temp file was left behind",
    );
    // The node is not stuck: the honest repository still works from the same cache.
    const ok = testClient(honest.url, repo.trustedRoot, cache);
    await ok.refresh();
    await ok.download(PAYLOAD, dest);
    return line;
  }

  before(async () => {
    repo = await freshTestRepository();
    keys = loadKeys([join(repo.dir, "keys")]);
    const files = tempDir("berth-repo-files-");
    // 64 KiB, so that a download takes many reads.
    writeFileSync(
      join(files, "payload.json"),
      JSON.stringify({
        id: "BSA-2026-0099",
        modified: "2026-12-01T00:00:00Z",
        details: randomBytes(32 * 1024).toString("hex"),
      }),
    );
    writeFileSync(
      join(files, "a.json"),
      JSON.stringify({ id: "BSA-2026-0100", modified: "2026-12-01T00:00:00Z" }),
    );
    oldTimestamps.push(readFileSync(join(repo.dir, "repository/metadata/timestamp.json")));
    await stageTargets(repo.dir, [
      { name: PAYLOAD, file: join(files, "payload.json"), custom: { kind: "advisory", id: "BSA-2026-0099" } },
    ]);
    await publish(repo.dir);
    oldTimestamps.push(readFileSync(join(repo.dir, "repository/metadata/timestamp.json")));
    await stageTargets(repo.dir, [
      {
        name: "advisories/BSA-2026-0100.json",
        file: join(files, "a.json"),
        custom: { kind: "advisory", id: "BSA-2026-0100" },
      },
    ]);
    await publish(repo.dir);
    await refresh(repo.dir);
    honest = await serveTestRepository(repo.dir);
  });
  after(async () => {
    await honest?.close();
    for (const s of servers) await s.close();
  });

  test("changed target bytes: refused by hash, never written", async () => {
    const tree = mirror();
    const sha = (await testClient(honest.url, repo.trustedRoot).target(PAYLOAD))!.hashes.sha256!;
    const file = join(tree, "targets/advisories", `${sha}.BSA-2026-0099.json`);
    const b = readFileSync(file);
    b[1000]! ^= 0x01;
    writeFileSync(file, b);
    const line = await refused(
      await serve(tree),
      await node(),
      /^target advisories\/BSA-2026-0099\.json refused: its SHA-256 is not the one the targets metadata records \(changed bytes\)$/,
      {
        download: PAYLOAD,
      },
    );
    // The same refusal through the CLI: one line, exit 1.
    const r = await berth(["repo", "verify", tree, "--trusted-root", repo.trustedRoot, "--json"]);
    assert.equal(r.code, 1);
    const rep = JSON.parse(r.stdout) as { targets: { name: string; status: string; reason?: string }[] };
    assert.deepEqual(
      rep.targets.filter((t) => t.status === "refused").map((t) => [t.name, t.reason]),
      [[PAYLOAD, line]],
    );
  });

  test("metadata signed by an untrusted key: a forged timestamp, and targets pushed with stolen online keys", async () => {
    const cache = await node();
    const t1 = mirror();
    retimestamp(t1, undefined, [generateKey("timestamp")]);
    await refused(
      await serve(t1),
      cache,
      /^timestamp metadata refused: signed by 0 of the 1 trusted keys it needs/,
    );

    // The attacker has the timestamp and snapshot keys, not the targets key: a new target signed by
    // another key, recorded by a genuinely signed snapshot and timestamp, must still be refused.
    const t2 = mirror();
    const v = versionOf(t2, "targets");
    const md = Metadata.fromJSON(MetadataKind.Targets, read(join(meta(t2), `${v}.targets.json`)));
    (md.signed as unknown as { version: number }).version = v + 1;
    sign(md, [...roleKeys("timestamp"), generateKey("targets")]);
    write(join(meta(t2), `${v + 1}.targets.json`), md);
    rechain(t2, `${v + 1}.targets.json`);
    await refused(
      await serve(t2),
      cache,
      /^targets metadata refused: signed by 0 of the 1 trusted keys it needs/,
    );
  });

  test("below the threshold: a new root signed by 1 of the 2 root keys it needs", async () => {
    const tree = mirror();
    const md = rootMd();
    (md.signed as unknown as { version: number }).version = 2;
    sign(md, roleKeys("root").slice(0, 1));
    write(join(meta(tree), "2.root.json"), md);
    await refused(
      await serve(tree),
      await node(),
      /^root metadata refused: signed by 1 of the 2 trusted keys it needs/,
    );
  });

  test("rollback: an older timestamp, and a newer timestamp naming an older snapshot or targets", async () => {
    const cache = await node();
    const t1 = mirror();
    writeFileSync(join(meta(t1), "timestamp.json"), oldTimestamps[1]!);
    await refused(
      await serve(t1),
      cache,
      /^timestamp metadata refused: version \d+ is older than version \d+ already trusted \(rollback\)$/,
    );

    // A freshly signed timestamp (stolen timestamp key) pointing at the old snapshot.
    const t2 = mirror();
    const old = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(oldTimestamps[1]!.toString()));
    retimestamp(t2, old.signed.snapshotMeta);
    await refused(
      await serve(t2),
      cache,
      /^timestamp metadata refused: it names snapshot version \d+, older than version \d+ already trusted \(rollback\)$/,
    );

    // Both online keys stolen: a new snapshot naming the previous targets version.
    const t3 = mirror();
    const v = versionOf(t3, "targets");
    rechain(t3, `${v - 1}.targets.json`);
    await refused(
      await serve(t3),
      cache,
      /^snapshot metadata refused: it names targets version \d+, older than version \d+ already trusted \(rollback\)$/,
    );
  });

  test("freeze: expired timestamp, and expired targets behind a fresh snapshot and timestamp", async () => {
    const cache = await node();
    // The genuine publisher's refresh, signed as if two days ago: a valid signature, a newer version,
    // an expiry in the past (what a mirror replaying a frozen repository serves).
    const frozen = freshCopy(repo.dir);
    await refresh(frozen, { now: new Date(Date.now() - 2 * 86400_000) });
    const t1 = join(frozen, "repository");
    await refused(await serve(t1), cache, /^timestamp metadata refused: expired \(a freeze attack/);

    const t2 = mirror();
    const v = versionOf(t2, "targets");
    const md = Metadata.fromJSON(MetadataKind.Targets, read(join(meta(t2), `${v}.targets.json`)));
    const s = md.signed as unknown as { version: number; expires: string };
    s.version = v + 1;
    s.expires = "2026-01-01T00:00:00Z";
    sign(md, roleKeys("targets"));
    write(join(meta(t2), `${v + 1}.targets.json`), md);
    rechain(t2, `${v + 1}.targets.json`);
    await refused(await serve(t2), cache, /^targets metadata refused: expired \(a freeze attack/);
  });

  test("mix-and-match: targets that are not the ones the snapshot names", async () => {
    const cache = newNode();
    // The mirror serves the previous targets file under the current name.
    const t1 = mirror();
    const v = versionOf(t1, "targets");
    cpSync(join(meta(t1), `${v - 1}.targets.json`), join(meta(t1), `${v}.targets.json`));
    await refused(
      await serve(t1),
      cache,
      /^targets metadata refused: (\d+ bytes where the snapshot metadata says \d+|its SHA-256 is not the one the snapshot metadata records).*mix-and-match/,
    );

    // With the snapshot key: a snapshot recording the old file's bytes but the current version.
    const t2 = mirror();
    cpSync(join(meta(t2), `${v - 1}.targets.json`), join(meta(t2), `${v + 1}.targets.json`));
    rechain(t2, `${v + 1}.targets.json`, { targetsVersion: v + 1 });
    await refused(
      await serve(t2),
      cache,
      new RegExp(
        `^targets metadata refused: version ${v - 1}, but the snapshot names version ${v + 1} \\(mix-and-match\\)$`,
      ),
    );
  });

  test("endless data: a target and a timestamp that never end are cut at their allowance", async () => {
    const tree = mirror();
    const sha = (await testClient(honest.url, repo.trustedRoot).target(PAYLOAD))!.hashes.sha256!;
    const sent = { target: 0, timestamp: 0 };
    const server = await endless(
      tree,
      (path) =>
        path === `/targets/advisories/${sha}.BSA-2026-0099.json`
          ? "target"
          : path === "/metadata/timestamp.json"
            ? "timestamp"
            : undefined,
      sent,
    );
    servers.push({
      close: () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cache = await node();
    await refused(
      url,
      cache,
      /^timestamp metadata refused: the server sent more than the 16384 bytes allowed \(endless data\)$/,
    );
    const target = await testClient(honest.url, repo.trustedRoot).target(PAYLOAD);
    // Only the target is endless now.
    server.removeAllListeners("request");
    server.on(
      "request",
      handler(
        tree,
        (p) => (p === `/targets/advisories/${sha}.BSA-2026-0099.json` ? "target" : undefined),
        sent,
      ),
    );
    await refused(
      url,
      cache,
      new RegExp(
        `^target advisories/BSA-2026-0099\\.json refused: the server sent more than the ${target!.length} bytes allowed \\(endless data\\)$`,
      ),
      { download: PAYLOAD },
    );
    // The client stopped reading: what the server managed to push is bounded (socket buffers), far
    // from endless.
    assert.ok(sent.target < 64 * 1024 * 1024, `the server pushed ${sent.target} bytes`);
  });

  test("a root that skips a version: 2.root.json that says version 3", async () => {
    const tree = mirror();
    const md = rootMd();
    (md.signed as unknown as { version: number }).version = 3;
    sign(md, roleKeys("root"));
    write(join(meta(tree), "2.root.json"), md);
    await refused(
      await serve(tree),
      await node(),
      /^root metadata refused: version 3 offered as the next root, where version 2 must come next/,
    );
  });

  test("fuzzed metadata: every mutation of timestamp, snapshot or targets is refused in one line, or harmless", async () => {
    const tree = mirror();
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const mutate = (b: Buffer): Buffer => {
      const m = Buffer.from(b);
      switch (rand(3)) {
        case 0:
          for (let k = 0; k < 1 + rand(4); k++) m[rand(m.length)] = rand(256);
          return m;
        case 1:
          return m.subarray(0, rand(m.length));
        default: {
          const at = rand(m.length);
          return Buffer.concat([
            m.subarray(0, at),
            Buffer.from(["{", "}", '"', ",", "[", "0", "\\u0000"][rand(7)]!),
            m.subarray(at),
          ]);
        }
      }
    };
    const files = [
      "/metadata/timestamp.json",
      `/metadata/${versionOf(tree, "snapshot")}.snapshot.json`,
      `/metadata/${versionOf(tree, "targets")}.targets.json`,
    ];
    let current: { path: string; bytes: Buffer } = { path: "", bytes: Buffer.alloc(0) };
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0]!;
      if (path === current.path) return void res.writeHead(200).end(current.bytes);
      const file = join(tree, ...path.split("/").filter(Boolean));
      if (path.includes("..") || !existsSync(file)) return void res.writeHead(404).end();
      res.writeHead(200).end(readFileSync(file));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    servers.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const outcomes = new Map<string, number>();
    const honestState = await testClient(honest.url, repo.trustedRoot).state();
    for (const path of files) {
      const original = readFileSync(join(tree, path));
      for (let i = 0; i < 30; i++) {
        current = { path, bytes: mutate(original) };
        const client = testClient(url, repo.trustedRoot, newNode());
        try {
          await client.refresh();
          // A mutation that changes nothing that is signed (a hex digit's case in a signature, say).
          assert.deepEqual(await client.state(), honestState);
          outcomes.set("accepted", (outcomes.get("accepted") ?? 0) + 1);
        } catch (e) {
          assert.ok(e instanceof RepoRefusal, `${path}: not a refusal: ${String(e)}`);
          assert.equal(e.message.split("\n").length, 1);
          const role = e.role;
          outcomes.set(role, (outcomes.get(role) ?? 0) + 1);
        }
      }
    }
    process.stderr.write(`# fuzzed metadata outcomes: ${JSON.stringify([...outcomes])}\n`);
    assert.ok(
      (outcomes.get("timestamp") ?? 0) > 0 &&
        (outcomes.get("snapshot") ?? 0) > 0 &&
        (outcomes.get("targets") ?? 0) > 0,
    );
  });

  test("unreachable, incomplete and stalled repositories: one line, and not called a refusal", async () => {
    const cache = await node();
    const before = cacheBytes(cache);
    const fail = async (url: string, stallMs?: number) => {
      const c = new RepoClient({ url, trustedRoot: repo.trustedRoot, cacheDir: cache, stallMs });
      const e = await c.refresh().then(
        () => undefined,
        (x: unknown) => x,
      );
      assert.ok(
        e instanceof Error && !(e instanceof RepoRefusal),
        `expected a plain failure, got ${String(e)}`,
      );
      assert.equal(e.message.split("\n").length, 1);
      return e.message;
    };
    // Nothing listens.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    assert.match(
      await fail(`http://127.0.0.1:${port}`),
      new RegExp(`^cannot reach http://127\\.0\\.0\\.1:${port}/metadata/2\\.root\\.json: ECONNREFUSED$`),
    );
    // A mirror without its timestamp.
    const t1 = mirror();
    rmSync(join(meta(t1), "timestamp.json"));
    assert.match(
      await fail(await serve(t1)),
      /^timestamp metadata: HTTP 404 for \S+\/metadata\/timestamp\.json \(missing from the repository\)$/,
    );
    // A server that accepts and never answers.
    const held: import("node:http").ServerResponse[] = [];
    const stall = createServer((_req, res) => void held.push(res));
    await new Promise<void>((r) => stall.listen(0, "127.0.0.1", () => r()));
    try {
      assert.match(
        await fail(`http://127.0.0.1:${(stall.address() as AddressInfo).port}`, 300),
        /^cannot reach \S+: no data for 0\.3 s$/,
      );
    } finally {
      for (const r of held) r.destroy();
      stall.closeAllConnections();
      await new Promise<void>((r) => stall.close(() => r()));
    }
    assert.deepEqual(cacheBytes(cache), before);
  });

  test("malformed JSON of every role", async () => {
    const cache = await node();
    const garbage = '{"signed": {"_type": "timestamp", "version": ';
    const t1 = mirror();
    writeFileSync(join(meta(t1), "2.root.json"), garbage);
    await refused(await serve(t1), cache, /^root metadata refused: not valid JSON/);
    const t2 = mirror();
    writeFileSync(join(meta(t2), "timestamp.json"), garbage);
    await refused(await serve(t2), cache, /^timestamp metadata refused: not valid JSON/);
    // Structurally wrong but valid JSON.
    const t3 = mirror();
    writeFileSync(
      join(meta(t3), "timestamp.json"),
      JSON.stringify({ signed: { _type: "timestamp" }, signatures: [] }),
    );
    await refused(await serve(t3), cache, /^timestamp metadata refused: malformed metadata/);
    // A mirror alone cannot get a malformed snapshot past the timestamp's hash...
    const t4 = mirror();
    writeFileSync(join(meta(t4), `${versionOf(t4, "snapshot")}.snapshot.json`), garbage);
    await refused(
      await serve(t4),
      newNode(),
      /^snapshot metadata refused: .*(bytes where the timestamp metadata says|SHA-256 is not the one the timestamp)/,
    );
    // ...with the timestamp key it reaches the parser, which refuses it.
    const t5 = mirror();
    const sv = versionOf(t5, "snapshot") + 1;
    writeFileSync(join(meta(t5), `${sv}.snapshot.json`), garbage);
    retimestamp(
      t5,
      new MetaFile({ version: sv, length: garbage.length, hashes: { sha256: sha256Hex(garbage) } }),
    );
    await refused(await serve(t5), cache, /^snapshot metadata refused: not valid JSON/);
    const t6 = mirror();
    const tv = versionOf(t6, "targets") + 1;
    writeFileSync(join(meta(t6), `${tv}.targets.json`), garbage);
    rechain(t6, `${tv}.targets.json`);
    await refused(await serve(t6), cache, /^targets metadata refused: not valid JSON/);
  });
});

/** A copy of a whole publisher directory (keys included): the genuine publisher, elsewhere. */
function freshCopy(dir: string): string {
  const d = join(tempDir("berth-repo-copy-"), "repo");
  cpSync(dir, d, { recursive: true });
  return d;
}

type Endless = (path: string) => "target" | "timestamp" | undefined;

/** Serves files of `tree`, except that paths `which` names stream zeros for ever. */
function handler(tree: string, which: Endless, sent: Record<string, number>) {
  return (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const kind = which(path);
    if (kind) {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const chunk = Buffer.alloc(16 * 1024);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) sent[kind] = (sent[kind] ?? 0) + chunk.length;
        if (!res.destroyed) res.once("drain", pump);
      };
      res.on("close", () => res.destroy());
      pump();
      return;
    }
    const file = join(tree, ...path.split("/").filter(Boolean));
    if (!/^\/(metadata|targets)\/[A-Za-z0-9./_+-]+$/.test(path) || path.includes("..") || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200).end(readFileSync(file));
  };
}

async function endless(tree: string, which: Endless, sent: Record<string, number>): Promise<Server> {
  const server = createServer(handler(tree, which, sent));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return server;
}
