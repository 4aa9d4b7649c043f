// Key rotation through `berth repo rotate`, seen by nodes that trusted only version 1: root v1 -> v2 with
// all-new root keys is accepted (by a node that had refreshed before and by a brand-new one); a
// timestamp key rotation (v3) is accepted and the retired timestamp key signs nothing any more; a v4
// signed only by the retired v1 root keys is refused, and the node stays on v3.

import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Metadata, MetadataKind } from "@tufjs/models";
import { RepoRefusal } from "../../src/repo/client.ts";
import { loadKeys, type SigningKey, signerOf } from "../../src/repo/keys.ts";
import { metadataBytes } from "../../src/repo/repository.ts";
import type { ServedRepository } from "../../src/repo/serve.ts";
import { berth, tempDir } from "../helpers.ts";
import {
  freshTestRepository,
  mirrorOf,
  serveTestRepository,
  type TestRepository,
  testClient,
} from "../shared/repo.ts";

describe("berth repo rotate", () => {
  const work = tempDir("berth-repo-rotate-");
  let repo: TestRepository;
  let served: ServedRepository;
  let v1Keys: SigningKey[];
  let v1TimestampKey: SigningKey;
  const nodeCache = join(work, "node");
  const metaDir = () => join(repo.dir, "repository/metadata");
  const rootJson = (v: number) =>
    JSON.parse(readFileSync(join(metaDir(), `${v}.root.json`), "utf8")) as {
      signed: { version: number; roles: Record<string, { keyids: string[]; threshold: number }> };
      signatures: { keyid: string }[];
    };

  before(async () => {
    repo = await freshTestRepository();
    const keys = loadKeys([join(repo.dir, "keys")]);
    const v1 = rootJson(1).signed;
    v1Keys = v1.roles.root!.keyids.map((id) => keys.get(id)!);
    v1TimestampKey = keys.get(v1.roles.timestamp!.keyids[0]!)!;
    served = await serveTestRepository(repo.dir);
    await testClient(served.url, repo.trustedRoot, nodeCache).refresh();
  });
  after(() => served?.close());

  test("root v1 -> v2 with new keys: signed by both sets, accepted by nodes that trust only v1", async () => {
    const r = await berth(["repo", "rotate", repo.dir, "--role", "root", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { rootVersion: number; added: string[]; retired: string[] };
    assert.equal(out.rootVersion, 2);
    const v2 = rootJson(2);
    const oldIds = v1Keys.map((k) => k.keyid).sort();
    assert.deepEqual(out.retired.sort(), oldIds);
    assert.deepEqual(v2.signed.roles.root!.keyids.sort(), out.added.sort());
    assert.equal(v2.signed.roles.root!.threshold, 2);
    assert.equal(
      v2.signed.roles.root!.keyids.filter((k) => oldIds.includes(k)).length,
      0,
      "the new root keeps an old root key",
    );
    // Signed by the old keys (for v1 clients) and the new ones (v2 stands on its own).
    const signers = v2.signatures.map((s) => s.keyid).sort();
    assert.deepEqual(signers, [...oldIds, ...out.added].sort());
    // The old key files are out of use.
    assert.deepEqual(
      readdirSync(join(repo.dir, "keys/retired/root")).sort(),
      oldIds.map((k) => `${k}.json`).sort(),
    );
    assert.deepEqual(
      readdirSync(join(repo.dir, "keys/root")).sort(),
      out.added.map((k) => `${k}.json`).sort(),
    );

    const node = testClient(served.url, repo.trustedRoot, nodeCache);
    await node.refresh();
    assert.equal((await node.state()).root.version, 2);
    assert.equal(JSON.parse(readFileSync(join(nodeCache, "metadata/root.json"), "utf8")).signed.version, 2);
    const fresh = testClient(served.url, repo.trustedRoot);
    await fresh.refresh();
    assert.deepEqual((await fresh.state()).root.roles.root!.keyids.sort(), out.added.sort());
  });

  test("timestamp key rotation (root v3): accepted; the retired timestamp key signs nothing any more", async () => {
    const r = await berth(["repo", "rotate", repo.dir, "--role", "timestamp", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { rootVersion: number; added: string[] };
    assert.equal(out.rootVersion, 3);
    const node = testClient(served.url, repo.trustedRoot, nodeCache);
    await node.refresh();
    const state = await node.state();
    assert.equal(state.root.version, 3);
    assert.deepEqual(state.root.roles.timestamp!.keyids, out.added);
    const ts = JSON.parse(readFileSync(join(metaDir(), "timestamp.json"), "utf8"));
    assert.deepEqual(
      ts.signatures.map((s: { keyid: string }) => s.keyid),
      out.added,
    );

    // A mirror serving a newer timestamp signed with the retired key.
    const tree = mirror();
    const md = Metadata.fromJSON(MetadataKind.Timestamp, ts);
    (md.signed as unknown as { version: number }).version += 5;
    md.signatures = {};
    md.sign(signerOf(v1TimestampKey));
    writeFileSync(join(tree, "metadata/timestamp.json"), metadataBytes(md));
    await expectRefused(tree, /^timestamp metadata refused: signed by 0 of the 1 trusted keys it needs/);
  });

  test("a v4 signed only by no-longer-trusted root keys is refused; nodes stay on v3", async () => {
    const tree = mirror();
    const md = Metadata.fromJSON(
      MetadataKind.Root,
      rootJson(3) as unknown as Parameters<typeof Metadata.fromJSON>[1],
    );
    (md.signed as unknown as { version: number }).version = 4;
    md.signatures = {};
    for (const k of v1Keys) md.sign(signerOf(k), true);
    writeFileSync(join(tree, "metadata/4.root.json"), metadataBytes(md));
    await expectRefused(tree, /^root metadata refused: signed by 0 of the 2 trusted keys it needs/);
    // A brand-new node trusting v1 walks 1 -> 2 -> 3 and refuses 4 the same way.
    const fresh = join(mkdtempSync(join(work, "fresh-")), "cache");
    const s = await serveTestRepository(tree);
    try {
      await assert.rejects(
        testClient(s.url, repo.trustedRoot, fresh).refresh(),
        /^RepoRefusal: root metadata refused: signed by 0 of the 2/,
      );
      assert.equal(JSON.parse(readFileSync(join(fresh, "metadata/root.json"), "utf8")).signed.version, 3);
    } finally {
      await s.close();
    }
    // berth repo verify from v1, against the honest repository: root v3.
    const r = await berth([
      "repo",
      "verify",
      served.url,
      "--trusted-root",
      repo.trustedRoot,
      "--metadata-only",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).trusted.root.version, 3);
  });

  function mirror(): string {
    return mirrorOf(repo.dir, work);
  }

  async function expectRefused(tree: string, want: RegExp): Promise<void> {
    const s = await serveTestRepository(tree);
    try {
      const before = readFileSync(join(nodeCache, "metadata/root.json"));
      const err = await testClient(s.url, repo.trustedRoot, nodeCache)
        .refresh()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof RepoRefusal, `expected a refusal, got ${String(err)}`);
      assert.match(err.message, want);
      assert.deepEqual(readFileSync(join(nodeCache, "metadata/root.json")), before);
    } finally {
      await s.close();
    }
  }
});
