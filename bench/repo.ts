// berth repo: publishing a repository of 1,000 targets, and a node's refresh + download of one target
// over loopback HTTP, beside tuf-js's own tooling measured in the same run: @tufjs/repo-mock's
// initializeTUFRepo (tuf-js's repository builder, one ECDSA key, in memory; its metadata and targets are
// then written out so both sides end with a servable tree) and tuf-js's Updater with its own fetcher
// (no Berth around it). Also the time per signature and per verified target, and what a refresh with
// nothing new costs a node: requests, bytes and CPU. Goal (issue 12): one small request, < 50 ms CPU.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initializeTUFRepo } from "@tufjs/repo-mock";
import { RepoClient } from "../src/repo/client.ts";
import { initRepository, publish } from "../src/repo/publish.ts";
import { serveRepository } from "../src/repo/serve.ts";
import { stageTargets } from "../src/repo/stage.ts";
import type { NewTarget } from "../src/repo/targets.ts";
import { printTable } from "./lib.ts";

const N = 1000;
const dir = mkdtempSync(join(tmpdir(), "berth-bench-repo-"));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Wall and CPU (user + system) milliseconds of one call. */
async function timed<T>(fn: () => Promise<T>): Promise<{ wall: number; cpu: number; value: T }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000, value };
}

/**
 * tuf-js's Updater with its own fetcher, in a child process: a new node (median of 5, after a warm-up)
 * and the same node refreshing with nothing new (median of 20). Medians of wall and CPU milliseconds.
 */
function peerClient(
  url: string,
  work: string,
): Promise<Record<"cold" | "warm", { wall: number; cpu: number }>> {
  const code = `
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Updater } from "tuf-js";
const [url, work] = process.argv.slice(1);
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const timed = async (fn) => { const c0 = process.cpuUsage(); const t0 = performance.now(); await fn();
  const c = process.cpuUsage(c0); return { wall: performance.now() - t0, cpu: (c.user + c.system) / 1000 }; };
const root = await (await fetch(url + "/metadata/1.root.json")).text();
const node = (i) => { const d = join(work, "peer-node-" + i); mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "root.json"), root); return d; };
const updater = (d) => new Updater({ metadataDir: d, metadataBaseUrl: url + "/metadata", targetBaseUrl: url + "/targets", targetDir: d });
const cold = [];
for (let i = -1; i < 5; i++) { const d = node(i); const t = await timed(async () => { const u = updater(d); await u.refresh();
  await u.downloadTarget(await u.getTargetInfo("advisories/BSA-2026-0500.json"), join(d, "dl.json")); }); if (i >= 0) cold.push(t); }
const warm = [];
for (let i = 0; i < 20; i++) warm.push(await timed(() => updater(join(work, "peer-node-0")).refresh()));
console.log(JSON.stringify({ cold: { wall: med(cold.map((c) => c.wall)), cpu: med(cold.map((c) => c.cpu)) },
  warm: { wall: med(warm.map((c) => c.wall)), cpu: med(warm.map((c) => c.cpu)) } }));
`;
  // Asynchronous: the server the child talks to runs in this process.
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", code, url, work], {
      cwd: new URL("..", import.meta.url).pathname,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("close", (c) =>
      c === 0
        ? resolve(JSON.parse(out) as Record<"cold" | "warm", { wall: number; cpu: number }>)
        : reject(new Error(`the tuf-js peer failed: ${err.slice(-500)}`)),
    );
  });
}

try {
  // Inputs: 1,000 advisories of about 1 KiB each.
  const files = join(dir, "files");
  mkdirSync(files);
  const targets: NewTarget[] = [];
  const contents: { name: string; content: string }[] = [];
  for (let i = 0; i < N; i++) {
    const id = `BSA-2026-${String(i).padStart(4, "0")}`;
    const content = JSON.stringify({ id, modified: "2026-12-01T00:00:00Z", details: "x".repeat(1000) });
    writeFileSync(join(files, `${id}.json`), content);
    targets.push({
      name: `advisories/${id}.json`,
      file: join(files, `${id}.json`),
      custom: { kind: "advisory", id },
    });
    contents.push({ name: `advisories/${id}.json`, content });
  }

  // 1. Publishing. Berth: init, stage (hash + copy every file), publish (sign targets, snapshot,
  // timestamp); all on disk. Peer: repo-mock builds the same set in memory, then writes it out.
  const repo = join(dir, "repo");
  const berthPublish = await timed(async () => {
    await initRepository(repo);
    await stageTargets(repo, targets);
    return publish(repo);
  });
  const peerPublish = await timed(async () => {
    const r = initializeTUFRepo(contents);
    const out = join(dir, "peer");
    mkdirSync(join(out, "metadata"), { recursive: true });
    for (const [name, md] of [
      ["1.root.json", r.rootMeta],
      ["timestamp.json", r.timestampMeta],
      ["1.snapshot.json", r.snapshotMeta],
      ["1.targets.json", r.targetsMeta],
    ] as const)
      writeFileSync(join(out, "metadata", name), JSON.stringify(md.toJSON()));
    for (const t of contents) {
      mkdirSync(join(out, "targets", "advisories"), { recursive: true });
      writeFileSync(join(out, "targets", t.name), t.content);
    }
    return r;
  });

  // Per signature and per verified target: signing the 1,000-target metadata again (Ed25519 over
  // its canonical JSON), and verifying downloads.
  const resign = await timed(() => publish(repo));
  const served = await serveRepository(join(repo, "repository"));
  const trustedRoot = join(repo, "repository/metadata/1.root.json");

  // 2. A new node: refresh (root probe, timestamp, snapshot, 1,000-target metadata) + one download.
  const newNode = async (i: number) => {
    const client = new RepoClient({ url: served.url, trustedRoot, cacheDir: join(dir, `node-${i}`) });
    const t = await timed(async () => {
      await client.refresh();
      await client.download("advisories/BSA-2026-0500.json", join(dir, `dl-${i}.json`));
    });
    return { ...t, client };
  };
  await newNode(-1); // warm-up: fetch, undici and the module graph
  const cold = [];
  for (let i = 0; i < 5; i++) cold.push(await newNode(i));
  // The peer runs in a process of its own: tuf-js and @tufjs/models exactly as published, without
  // Berth's linear targets map (src/repo/tufjs-linear.ts) that this process has loaded.
  const peer = await peerClient(served.url, dir);
  // 3. The same node again with nothing new: what a node pays per check.
  const warm = [];
  for (let i = 0; i < 20; i++) {
    const client = new RepoClient({ url: served.url, trustedRoot, cacheDir: join(dir, "node-0") });
    const t = await timed(() => client.refresh());
    warm.push({ ...t, log: client.fetcher.log });
  }
  await served.close();

  printTable(`repo: publish ${N.toLocaleString("en-US")} targets`, [
    {
      metric: "init + stage + publish, wall",
      berth: berthPublish.wall,
      peer: peerPublish.wall,
      peerName: "@tufjs/repo-mock initializeTUFRepo + write out",
      unit: "ms",
      higherIsBetter: false,
    },
    {
      metric: "same, CPU",
      berth: berthPublish.cpu,
      peer: peerPublish.cpu,
      peerName: "@tufjs/repo-mock initializeTUFRepo + write out",
      unit: "ms",
      higherIsBetter: false,
    },
  ]);
  printTable("repo: a new node, refresh + download of one target (loopback HTTP, median of 5)", [
    {
      metric: "wall",
      berth: median(cold.map((c) => c.wall)),
      peer: peer.cold.wall,
      peerName: "tuf-js Updater, its own fetcher",
      unit: "ms",
      higherIsBetter: false,
    },
    {
      metric: "CPU",
      berth: median(cold.map((c) => c.cpu)),
      peer: peer.cold.cpu,
      peerName: "tuf-js Updater, its own fetcher",
      unit: "ms",
      higherIsBetter: false,
    },
  ]);
  printTable("repo: a node's refresh with nothing new (median of 20)", [
    {
      metric: "wall",
      berth: median(warm.map((w) => w.wall)),
      peer: peer.warm.wall,
      peerName: "tuf-js Updater, its own fetcher",
      unit: "ms",
      higherIsBetter: false,
    },
    {
      metric: "CPU",
      berth: median(warm.map((w) => w.cpu)),
      peer: peer.warm.cpu,
      peerName: "tuf-js Updater, its own fetcher",
      unit: "ms",
      higherIsBetter: false,
    },
  ]);
  const log = warm.at(-1)!.log;
  const coldLog = cold[0]!.client.fetcher.log;
  console.log(`
## repo: what it costs
| metric | value |
|---|---|
| signatures per publish (targets, snapshot, timestamp) | 3 |
| re-sign ${N.toLocaleString("en-US")}-target metadata and the chain, per signature | ${(resign.wall / 3).toFixed(1)} ms wall |
| new node: requests, bytes | ${coldLog.length}, ${coldLog.reduce((n, r) => n + r.bytes, 0).toLocaleString("en-US")} |
| per verified target (download + length + SHA-256, new node's total / 1) | ${median(cold.map((c) => c.wall)).toFixed(1)} ms wall |
| refresh with nothing new: requests | ${log.length} (${log.map((r) => `${r.url.replace(/^http:\/\/[^/]+/, "")} ${r.status}`).join(", ")}) |
| refresh with nothing new: bytes | ${log.reduce((n, r) => n + r.bytes, 0)} |
| refresh with nothing new: CPU, median of 20 | ${median(warm.map((w) => w.cpu)).toFixed(1)} ms (goal < 50 ms) |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
