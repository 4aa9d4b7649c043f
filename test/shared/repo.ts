// Test repositories for every part that publishes into or reads from Berth's TUF repository.
//
//   const repo = await sharedTestRepository();           // made once per test run (sharedFixture)
//   //   repo.dir          a publisher directory: berth repo add/publish work on it (root 2 of 3 keys
//   //                     under repo.dir/keys); publishing from several test files at once is safe
//   //                     (the repository's lock), but pick target names no other test uses
//   //   repo.trustedRoot  its 1.root.json: bake it into images, give it to clients
//   const served = await serveTestRepository(repo.dir);  // http://127.0.0.1:PORT, in this process
//   //   serveTestRepository(repo.dir, { port })          a port chosen up front (10.0.2.2:PORT in QEMU)
//   //   served.url, served.log (requests), await served.close()
//   const client = testClient(served.url, repo.trustedRoot);  // a RepoClient with a fresh cache
//   const mine = await freshTestRepository();             // a repository of its own, to tamper with
//   const tree = mirrorOf(mine.dir, work);                // a copy of its served tree, to change and serve
//   const bad = await mirrorWithChangedTarget(mine, name, work);  // one byte of a target flipped
//
// Publishing from a test: the berth CLI (berth(["repo", "add", repo.dir, "advisory", file, "--publish"]))
// or the functions in src/repo/stage.ts and src/repo/publish.ts (stageTargets, publish).

import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RepoClient } from "../../src/repo/client.ts";
import { type InitOptions, initRepository } from "../../src/repo/publish.ts";
import { readState } from "../../src/repo/repository.ts";
import { type ServedRepository, serveRepository } from "../../src/repo/serve.ts";
import { storagePath } from "../../src/repo/targets.ts";
import { sharedFixture, tempDir } from "../helpers.ts";

export interface TestRepository {
  dir: string;
  trustedRoot: string;
}

/** The run's shared test repository (made on first use, then reused by every test file of the run). */
export async function sharedTestRepository(): Promise<TestRepository> {
  const fixture = await sharedFixture("repo-shared", async (d) => {
    await initRepository(join(d, "repo"));
  });
  const dir = join(fixture, "repo");
  return { dir, trustedRoot: join(dir, "repository/metadata/1.root.json") };
}

/** A private repository of its own (fresh keys, root 2 of 3), for tests that change or attack it. */
export async function freshTestRepository(o: InitOptions = {}): Promise<TestRepository> {
  const dir = join(tempDir("berth-repo-test-"), "repo");
  await initRepository(dir, o);
  return { dir, trustedRoot: join(dir, "repository/metadata/1.root.json") };
}

/** Serves a publisher directory's repository/ tree (or a served tree) on loopback. */
export function serveTestRepository(
  dir: string,
  o: { host?: string; port?: number } = {},
): Promise<ServedRepository> {
  const tree = existsSync(join(dir, "metadata")) ? dir : join(dir, "repository");
  return serveRepository(tree, o.host ?? "127.0.0.1", o.port ?? 0);
}

/** A client with a cache of its own (a new node, unless `cacheDir` is reused). */
export function testClient(url: string, trustedRoot: string, cacheDir?: string): RepoClient {
  return new RepoClient({
    url,
    trustedRoot,
    cacheDir: cacheDir ?? join(tempDir("berth-repo-client-"), "cache"),
  });
}

/** A copy of a repository's served tree under `parent`: a mirror for a test to change and serve. */
export function mirrorOf(dir: string, parent: string): string {
  const tree = join(mkdtempSync(join(parent, "mirror-")), "tree");
  cpSync(join(dir, "repository"), tree, { recursive: true });
  return tree;
}

/** A mirror whose copy of target `name` has one byte flipped (same length, other bytes). */
export async function mirrorWithChangedTarget(
  repo: TestRepository,
  name: string,
  parent: string,
): Promise<string> {
  const tree = mirrorOf(repo.dir, parent);
  const t = (await readState(repo.dir)).targets.signed.targets[name];
  if (!t) throw new Error(`no target ${name} in ${repo.dir}`);
  const file = storagePath(join(tree, "targets"), name, t.hashes.sha256!);
  const b = readFileSync(file);
  b[b.length >> 1]! ^= 0x20;
  writeFileSync(file, b);
  return tree;
}
