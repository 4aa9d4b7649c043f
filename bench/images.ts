// berth images against `docker build` of the equivalent Dockerfile, per image, in the same run:
// FROM a trixie minbase made here with mmdebstrap and `docker import`, `apt-get install
// --no-install-recommends` of the same packages (apt's download cache kept in a BuildKit cache mount,
// so both sides build from a warm cache), the same user and entrypoint. Sizes are compressed the same
// way for both (each layer gzip -6, what a registry push stores); build times are warm: one untimed
// build first, then the timed one. Official images' sizes (from the issue) are printed beside.
//
//   node bench/images.ts [NAME...]     default: the eleven middleware images

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { readDefinition } from "../src/images/definition.ts";

const ROOT = join(import.meta.dirname, "..");
const BERTH = join(ROOT, "bin/berth");
const BASE = "berth-images-bench-base:trixie";
/** Debian's docker.io client, for every docker call here: it builds with the engine's own BuildKit
 * (DOCKER_BUILDKIT=1). A newer client earlier in PATH (this machine has a 28.x one in /usr/local/bin)
 * wants the buildx plugin for that, which Debian does not ship. */
const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
const ELEVEN = [
  "nginx",
  "httpd",
  "haproxy",
  "redis",
  "memcached",
  "postgresql",
  "mariadb",
  "rabbitmq",
  "tomcat",
  "etcd",
  "mosquitto",
];
const OFFICIAL: Record<string, string> = {
  nginx: "nginx:1-trixie 63.1 MB",
  redis: "redis:8-bookworm 52.8 MB",
  postgresql: "postgres:17-bookworm 156 MB",
};

function sh(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    maxBuffer: 1 << 30,
    env: o.env ?? process.env,
    input: o.input,
  });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${(r.stderr ?? "").slice(-800)}`);
  return r.stdout;
}

function timed(f: () => void): number {
  const t0 = performance.now();
  f();
  return (performance.now() - t0) / 1000;
}

/** Sum of each layer of a docker-save stream compressed with gzip -6. */
async function dockerCompressedBytes(image: string): Promise<number> {
  const saved = spawnSync(DOCKER, ["save", image], { maxBuffer: 2 ** 31 });
  if (saved.status !== 0) throw new Error(`docker save ${image} failed`);
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((res, rej) => {
    extract.on("entry", (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => void chunks.push(c as Buffer));
      stream.on("end", () => {
        files.set(h.name, Buffer.concat(chunks));
        next();
      });
    });
    extract.on("finish", res);
    extract.on("error", rej);
  });
  extract.end(saved.stdout);
  await done;
  const manifest = JSON.parse(files.get("manifest.json")!.toString()) as { Layers: string[] }[];
  return manifest[0]!.Layers.reduce((s, l) => s + gzipSync(files.get(l)!, { level: 6 }).length, 0);
}

function dockerfile(name: string): string {
  const d = readDefinition(join(ROOT, "images", `${name}.yaml`));
  const r = d.run;
  const lines = [
    `FROM ${BASE}`,
    `RUN --mount=type=cache,id=berth-images-bench-apt,target=/var/cache/apt,sharing=locked \\`,
    "    apt-get update && \\",
    `    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${d.packages.join(" ")} && \\`,
    "    rm -rf /var/lib/apt/lists/*",
    `USER ${r.user.uid}:${r.user.gid}`,
  ];
  if (r.entrypoint.length) lines.push(`ENTRYPOINT ${JSON.stringify(r.entrypoint)}`);
  if (r.cmd.length) lines.push(`CMD ${JSON.stringify(r.cmd)}`);
  return `${lines.join("\n")}\n`;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

const names = process.argv.slice(2).length ? process.argv.slice(2) : ELEVEN;
const work = mkdtempSync(join(tmpdir(), "berth-images-bench-"));
const made: string[] = [];
try {
  // The Dockerfiles' base: trixie minbase from the same mirror apt uses, imported as one layer.
  const baseSeconds = timed(() =>
    sh("bash", [
      "-c",
      `set -o pipefail; mmdebstrap --quiet --variant=minbase trixie - | ${DOCKER} import - ${BASE}`,
    ]),
  );
  made.push(BASE);
  console.log(`base ${BASE}: mmdebstrap + docker import in ${baseSeconds.toFixed(1)} s`);
  const env = { ...process.env, DOCKER_BUILDKIT: "1" };
  const rows: string[][] = [];
  for (const name of names) {
    const out = join(work, "out");
    const build = () =>
      sh(BERTH, ["images", "build", name, "--out", out, "--db", join(work, "db.sqlite"), "-q"]);
    build(); // warm: every .deb in Berth's cache
    const berthSeconds = timed(build);
    const rec = JSON.parse(readFileSync(join(out, name, "build.json"), "utf8")) as {
      compressedBytes: number;
    };
    const ctx = join(work, `ctx-${name}`);
    sh("mkdir", ["-p", ctx]);
    writeFileSync(join(ctx, "Dockerfile"), dockerfile(name));
    const tag = `berth-images-bench-${name}:dockerfile`;
    made.push(tag);
    const dbuild = () => sh(DOCKER, ["build", "--no-cache", "-q", "-t", tag, ctx], { env });
    dbuild(); // warm: apt's archive cache in the BuildKit cache mount
    const dockerSeconds = timed(dbuild);
    const dockerBytes = await dockerCompressedBytes(tag);
    rows.push([
      name,
      mb(rec.compressedBytes),
      mb(dockerBytes),
      `${(rec.compressedBytes / dockerBytes).toFixed(2)}x`,
      `${berthSeconds.toFixed(1)} s`,
      `${dockerSeconds.toFixed(1)} s`,
      `${(berthSeconds / dockerSeconds).toFixed(2)}x`,
      OFFICIAL[name] ?? "",
    ]);
    console.log(rows.at(-1)!.join(" | "));
  }
  console.log(
    "\n## berth images vs docker build of the equivalent Dockerfile (goal: both ratios <= 0.5x; nginx <= 15 MB)",
  );
  console.log(
    "| image | berth size | Dockerfile size | size ratio | berth build | docker build | time ratio | official image |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
} finally {
  for (const t of made.reverse()) spawnSync(DOCKER, ["rmi", "-f", t]);
  rmSync(work, { recursive: true, force: true });
}
