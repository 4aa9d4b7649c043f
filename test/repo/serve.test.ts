// berth repo serve: files inside the tree and nothing else. Traversal in every spelling, symlinks out of
// the tree, directories, other methods, raw garbage and thousands of fuzzed request lines over plain
// sockets: each answered 4xx (never 5xx, never a file from outside), and the server keeps serving.
// Then the command itself: it prints its address for port 0 and stops cleanly on SIGTERM.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type ServedRepository, serveRepository } from "../../src/repo/serve.ts";
import { BERTH, tempDir } from "../helpers.ts";

/** Sends raw bytes, returns the status of the first response line (0 when the connection just closed). */
function raw(port: number, request: Buffer | string): Promise<number> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let got = "";
    s.setTimeout(5000, () => s.destroy());
    s.on("data", (d) => {
      got += d.toString("latin1");
    });
    s.on("close", () => resolve(Number(/^HTTP\/1\.[01] (\d{3})/.exec(got)?.[1] ?? 0)));
    s.on("error", () => {});
    s.end(request);
  });
}

describe("berth repo serve", () => {
  const dir = tempDir("berth-repo-serve-");
  const tree = join(dir, "tree");
  let s: ServedRepository;
  let port: number;

  before(async () => {
    mkdirSync(join(tree, "metadata"), { recursive: true });
    mkdirSync(join(tree, "targets/sub"), { recursive: true });
    writeFileSync(join(tree, "metadata/timestamp.json"), '{"signed":{}}');
    writeFileSync(join(tree, "targets/sub/a.bin"), "A");
    writeFileSync(join(dir, "secret"), "outside the tree");
    symlinkSync(join(dir, "secret"), join(tree, "targets/escape"));
    symlinkSync("../..", join(tree, "targets/up"));
    s = await serveRepository(tree);
    port = Number(new URL(s.url).port);
  });
  after(() => s?.close());

  const get = async (path: string, init?: RequestInit) => {
    const r = await fetch(`${s.url}${path}`, init);
    return { status: r.status, body: await r.text(), type: r.headers.get("content-type") };
  };

  test("files in the tree are served; HEAD gives the length", async () => {
    assert.deepEqual(await get("/metadata/timestamp.json"), {
      status: 200,
      body: '{"signed":{}}',
      type: "application/json",
    });
    assert.equal((await get("/targets/sub/a.bin")).body, "A");
    const h = await fetch(`${s.url}/targets/sub/a.bin`, { method: "HEAD" });
    assert.equal(h.headers.get("content-length"), "1");
  });

  test("nothing outside the tree, in any spelling; no directories; other methods 405", async () => {
    for (const p of ["/targets/escape", "/targets/up/secret", "/targets/sub", "/metadata/nope.json"])
      assert.equal((await get(p)).status, 404, p);
    for (const p of [
      "/",
      "/targets/",
      "/%2e%2e/secret",
      "/targets/%2e%2e/%2e%2e/secret",
      "/targets/sub%2f..%2f..%2fsecret",
      "/targets/..%5c..%5csecret",
      "/metadata/timestamp.json%00",
      "/.hidden",
      "/targets//sub/a.bin",
      `/${"a/".repeat(2000)}`,
      "/%zz",
    ])
      assert.equal(await raw(port, `GET ${p} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`), 400, p);
    assert.equal(await raw(port, "GET ../secret HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), 400);
    for (const m of ["POST", "PUT", "DELETE", "OPTIONS"])
      assert.equal((await get("/metadata/timestamp.json", { method: m })).status, 405, m);
  });

  test("fuzzed request lines and garbage: only 4xx or the real file, and the server stays up", async () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const alphabet = Buffer.from("/.%2e5cfF0aAz\\\0 \r\n?#~-_targetsmetadatimestamp.json");
    const statuses = new Map<number, number>();
    const requests: Promise<number>[] = [];
    for (let i = 0; i < 1500; i++) {
      let req: Buffer;
      if (i % 5 === 0) req = Buffer.from(Array.from({ length: 1 + rand(200) }, () => rand(256)));
      else {
        const path = Buffer.from(
          Array.from({ length: 1 + rand(40) }, () => alphabet[rand(alphabet.length)]!),
        );
        req = Buffer.concat([
          Buffer.from(i % 7 ? "GET /" : "HEAD "),
          path,
          Buffer.from(" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        ]);
      }
      requests.push(raw(port, req));
      if (requests.length >= 50)
        for (const st of await Promise.all(requests.splice(0))) statuses.set(st, (statuses.get(st) ?? 0) + 1);
    }
    for (const st of await Promise.all(requests)) statuses.set(st, (statuses.get(st) ?? 0) + 1);
    const bad = [...statuses.keys()].filter((st) => st !== 0 && st !== 200 && (st < 400 || st >= 500));
    assert.deepEqual(bad, [], `statuses: ${JSON.stringify([...statuses])}`);
    // Any 200 was for a file that is in the tree; the secret never left.
    assert.ok(
      s.log.every(
        (l) => l.status !== 200 || /^\/(metadata\/timestamp\.json|targets\/sub\/a\.bin)(\?.*)?$/.test(l.path),
      ),
      JSON.stringify(s.log.filter((l) => l.status === 200)),
    );
    assert.equal((await get("/metadata/timestamp.json")).status, 200, "the server went down");
  });

  test("the command prints its address for port 0 and exits 0 on SIGTERM", async () => {
    const child = spawn(BERTH, ["repo", "serve", tree, "--listen", "127.0.0.1:0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", () => {
        const m = /serving \S+ at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on("exit", (c) => reject(new Error(`serve exited ${c}: ${out}`)));
    });
    const r = await fetch(`${url}/targets/sub/a.bin`);
    assert.equal(await r.text(), readFileSync(join(tree, "targets/sub/a.bin"), "utf8"));
    const code = await new Promise<number | null>((resolve) => {
      child.on("exit", (c) => resolve(c));
      child.kill("SIGTERM");
    });
    assert.equal(code, 0);
  });
});
