// The archive client against the real Debian archive, and against a local proxy of it that tampers with
// chosen files, to show that bad signatures and bad hashes are refused and nothing is left behind.

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ContentCache } from "../../src/common/cache.ts";
import { Archive } from "../../src/pkg/archive.ts";
import { PackageIndex } from "../../src/pkg/index.ts";
import {
  DEFAULT_KEYRING,
  DEFAULT_MIRROR,
  DEFAULT_SECURITY_MIRROR,
  type Repository,
} from "../../src/pkg/sources.ts";
import { berth, isOneLineError, tempDir } from "../helpers.ts";

const repo = (uri: string, suite: string): Repository => ({
  uri,
  suite,
  components: ["main"],
  architecture: "amd64",
  keyring: DEFAULT_KEYRING,
});

type Tamper = (path: string, body: Buffer) => Buffer | undefined;

/** A proxy of the Debian mirror that counts requests and can rewrite responses. */
class TamperingMirror {
  server!: Server;
  requests: string[] = [];
  tamper: Tamper = () => undefined;
  get base(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/debian`;
  }
  async start(): Promise<void> {
    this.server = createServer(async (req, res) => {
      const path = (req.url ?? "/").replace(/^\/debian/, "");
      this.requests.push(path);
      const upstream = await fetch(`${DEFAULT_MIRROR}${path}`);
      const body = Buffer.from(await upstream.arrayBuffer());
      const changed = this.tamper(path, body);
      res.writeHead(upstream.status, { "content-length": (changed ?? body).length });
      res.end(changed ?? body);
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** Everything under a cache directory, to check that nothing half-written stays. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name));
}

describe("archive client", () => {
  const mirror = new TamperingMirror();
  before(() => mirror.start());
  after(() => mirror.stop());

  for (const [uri, suite] of [
    [DEFAULT_MIRROR, "trixie"],
    [DEFAULT_MIRROR, "bookworm"],
    [DEFAULT_SECURITY_MIRROR, "trixie-security"],
    [DEFAULT_SECURITY_MIRROR, "bookworm-security"],
  ] as const) {
    test(`verifies ${suite} and loads its main index`, async () => {
      const archive = new Archive();
      const vr = await archive.release(repo(uri, suite));
      assert.ok(vr.signers.length >= 1, "no good signature reported");
      assert.ok(vr.release.files.size > 10);
      const index = await archive.loadIndex([repo(uri, suite)]);
      assert.ok(index.size > (suite.endsWith("security") ? 50 : 30_000), `${index.size} packages`);
    });
  }

  test("an index loaded from the parsed-index cache equals one parsed stanza by stanza (ids, candidates, providers)", async () => {
    const repos = [repo(DEFAULT_MIRROR, "trixie"), repo(DEFAULT_SECURITY_MIRROR, "trixie-security")];
    const archive = new Archive();
    await archive.loadIndex(repos); // fills the cache if this machine had not parsed these yet
    const cached = await archive.loadIndex(repos);
    // The reference: every Packages file through addPackagesFile, as before the cache existed.
    const fresh = new PackageIndex("amd64");
    for (const r of repos) {
      const vr = await archive.release(r);
      await fresh.addPackagesFile(await archive.packagesIndex(vr, "main"), `${r.suite}/main`, r.uri);
    }
    assert.equal(cached.size, fresh.size);
    for (const name of fresh.names()) {
      const a = cached.allVersions(name);
      const b = fresh.allVersions(name);
      assert.deepEqual(a, b, name);
      assert.deepEqual(
        cached.providers(name).map((p) => [p.pkg.name, p.pkg.version, p.version]),
        fresh.providers(name).map((p) => [p.pkg.name, p.pkg.version, p.version]),
        `providers of ${name}`,
      );
    }
  });

  test("an InRelease with a bad signature is refused and not cached", async () => {
    const cache = new ContentCache(tempDir());
    mirror.tamper = (path, body) =>
      path.endsWith("/InRelease")
        ? Buffer.from(body.toString("latin1").replace(/^Version: (.*)$/m, "Version: 99"), "latin1")
        : undefined;
    try {
      await assert.rejects(
        new Archive({ cache }).release(repo(mirror.base, "trixie")),
        /OpenPGP signature is not valid/,
      );
    } finally {
      mirror.tamper = () => undefined;
    }
    assert.deepEqual(filesUnder(cache.root), []);
  });

  test("a signed Release for another suite is refused (no replay of old metadata)", async () => {
    const cache = new ContentCache(tempDir());
    const bookworm = Buffer.from(
      await (await fetch(`${DEFAULT_MIRROR}/dists/bookworm/InRelease`)).arrayBuffer(),
    );
    mirror.tamper = (path) => (path === "/dists/trixie/InRelease" ? bookworm : undefined);
    try {
      await assert.rejects(
        new Archive({ cache }).release(repo(mirror.base, "trixie")),
        /not the requested "trixie"/,
      );
    } finally {
      mirror.tamper = () => undefined;
    }
  });

  test("a Packages index whose hash does not match the Release is refused and nothing is kept", async () => {
    const cache = new ContentCache(tempDir());
    mirror.tamper = (path, body) => {
      if (!path.includes("/binary-amd64/")) return undefined;
      const b = Buffer.from(body);
      b[b.length >> 1]! ^= 0xff;
      return b;
    };
    try {
      const archive = new Archive({ cache });
      const vr = await archive.release(repo(mirror.base, "trixie"));
      await assert.rejects(archive.packagesIndex(vr, "main"), /hash mismatch|corrupt/);
    } finally {
      mirror.tamper = () => undefined;
    }
    assert.deepEqual(
      filesUnder(cache.root).filter((f) => !f.includes("/metadata/")),
      [],
      "a blob or temp file was left in the cache",
    );
  });

  test("the index is served from the cache on the second load; a changed .deb is refused", async () => {
    const cache = new ContentCache(tempDir());
    mirror.requests = [];
    const first = await new Archive({ cache }).loadIndex([repo(mirror.base, "trixie")]);
    assert.ok(
      mirror.requests.some((r) => r.includes("by-hash")),
      "first load fetched no index",
    );
    mirror.requests = [];
    await new Archive({ cache }).loadIndex([repo(mirror.base, "trixie")]);
    assert.deepEqual(
      mirror.requests,
      ["/dists/trixie/InRelease"],
      "second load should only revalidate InRelease",
    );

    const rec = first.candidate("hello")!;
    mirror.tamper = (path, body) =>
      path.endsWith(".deb") ? Buffer.concat([body, Buffer.from("x")]) : undefined;
    try {
      await assert.rejects(new Archive({ cache }).fetchDeb(rec), /hash mismatch/);
    } finally {
      mirror.tamper = () => undefined;
    }
    assert.equal(await cache.has(rec.sha256!), false);
    const path = await new Archive({ cache }).fetchDeb(rec);
    assert.equal(path, cache.blobPath(rec.sha256!));
  });

  test("offline mode works from the cache and fails clearly without it", async () => {
    const cache = new ContentCache(tempDir());
    await assert.rejects(
      new Archive({ cache, offline: true }).release(repo(DEFAULT_MIRROR, "trixie")),
      /offline/,
    );
    await new Archive({ cache }).loadIndex([repo(DEFAULT_MIRROR, "trixie")]);
    const idx = await new Archive({ cache, offline: true }).loadIndex([repo(DEFAULT_MIRROR, "trixie")]);
    assert.ok(idx.candidate("bash"));
  });

  test("CLI: bad mirror URL and unknown suite fail with one line", async () => {
    const badUrl = await berth(["pkg", "update", "--mirror", "ftp://x"]);
    assert.equal(badUrl.code, 2);
    assert.ok(isOneLineError(badUrl.stderr), badUrl.stderr);
    const noSuite = await berth(["pkg", "update", "--suite", "no-such-suite"]);
    assert.equal(noSuite.code, 1);
    assert.ok(isOneLineError(noSuite.stderr), noSuite.stderr);
  });
});
