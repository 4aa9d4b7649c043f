// The built images every test file of a run shares: all twelve definitions built once (one archive
// view, warm cache) into a directory of the run's shared fixtures, with the database their gate used.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { berth, sharedFixture } from "../helpers.ts";

export const IMAGE_NAMES = [
  "berth",
  "etcd",
  "haproxy",
  "httpd",
  "mariadb",
  "memcached",
  "mosquitto",
  "nginx",
  "postgresql",
  "rabbitmq",
  "redis",
  "tomcat",
];

export interface Built {
  out: string;
  db: string;
}

export async function builtImages(): Promise<Built> {
  const dir = await sharedFixture("images-built", async (d) => {
    const r = await berth([
      "images",
      "build",
      "--all",
      "--out",
      join(d, "out"),
      "--db",
      join(d, "db.sqlite"),
      "--repository",
      "berth-images-test",
      "-q",
    ]);
    assert.equal(r.code, 0, r.stderr);
  });
  return { out: join(dir, "out"), db: join(dir, "db.sqlite") };
}

export interface BuildJson {
  name: string;
  version: string;
  ref: string;
  manifestDigest: string;
  configDigest: string;
  layerDigest: string;
  sourceDateEpoch: number;
  created: string;
  packages: { name: string; version: string; chain: string[] }[];
  dropped: { package: string; reason: string; alsoRemoved: string[] }[];
  shells: string[];
  compressedBytes: number;
  annotations: Record<string, string>;
  run: { tmpfs: string[]; volumes: string[]; ports: string[]; user: { uid: number; gid: number } };
  cves: { fixableHighOrCritical: number; total: number; fixable: number };
}

export function record(b: Built, name: string): BuildJson {
  return JSON.parse(readFileSync(join(b.out, name, "build.json"), "utf8")) as BuildJson;
}
