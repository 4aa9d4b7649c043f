// Dependency closure against apt itself: a trixie root made by mmdebstrap (--variant=apt, apt lists
// kept) is the installed base, `apt-get install --simulate --no-install-recommends` in it is the
// oracle, and Berth resolves the same request on the very same Packages file.

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { PackageIndex, type PackageRecord } from "../../src/pkg/index.ts";
import { resolve, whyChain } from "../../src/pkg/resolve.ts";
import { readStatus } from "../../src/pkg/status.ts";
import { berth, mapLimit, run, tempDir } from "../helpers.ts";

const MIRROR = "http://deb.debian.org/debian";

// At least 20 install requests, the ones the issue names first. Each is compared in full.
const REQUESTS = [
  "docker.io",
  "containerd",
  "openssh-server",
  "systemd-sysv",
  "nginx",
  "postgresql",
  "linux-image-cloud-amd64",
  "linux-image-amd64",
  "podman",
  "python3",
  "git",
  "curl",
  "exim4",
  "postfix",
  "chrony",
  "apparmor",
  "systemd-resolved",
  "redis-server",
  "mariadb-server",
  "apache2",
  "build-essential",
  "network-manager",
  "qemu-system-x86",
  "libvirt-daemon-system",
  "bind9",
  "nginx postgresql redis-server",
];

/** Differences we accept, each with the reason apt and Berth legitimately differ. Empty today. */
const KNOWN_DIFFERENCES: Record<string, { onlyBerth: string[]; onlyApt: string[]; reason: string }> = {};

async function mmdebstrap(dir: string, variant: string, extra: string[] = []): Promise<void> {
  const r = await run("mmdebstrap", [`--variant=${variant}`, ...extra, "trixie", dir, MIRROR]);
  assert.equal(r.code, 0, r.stderr.slice(-2000));
}

async function aptSimulate(root: string, names: string[]): Promise<Set<string>> {
  const r = await run("chroot", [
    root,
    "apt-get",
    "install",
    "--simulate",
    "--no-install-recommends",
    "-o",
    "Debug::NoLocking=1",
    ...names,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return new Set(
    r.stdout
      .split("\n")
      .filter((l) => l.startsWith("Inst "))
      .map((l) => l.split(" ")[1]!.replace(/:amd64$/, "")),
  );
}

describe("dependency closure", () => {
  let root: string;
  let index: PackageIndex;
  let installed: PackageRecord[];

  before(async () => {
    root = join(tempDir("berth-aptroot-"), "root");
    await mmdebstrap(root, "apt", ["--skip=cleanup/apt"]);
    const lists = join(root, "var/lib/apt/lists");
    const packages = readdirSync(lists).filter((f) => f.endsWith("_Packages"));
    assert.equal(packages.length, 1, `lists: ${packages.join(", ")}`);
    index = new PackageIndex("amd64");
    await index.addPackagesFile(join(lists, packages[0]!), "trixie/main");
    installed = await index.recordsFromStatusFile(join(root, "var/lib/dpkg/status"));
  });

  test(`${REQUESTS.length} install requests give exactly apt's set`, async () => {
    const results = await mapLimit(REQUESTS, 2, async (req) => {
      const names = req.split(" ");
      const apt = await aptSimulate(root, names);
      const res = resolve(
        index,
        names.map((name) => ({ name })),
        { installed },
      );
      const ours = new Set(res.packages.map((p) => p.name));
      return {
        req,
        onlyBerth: [...ours].filter((n) => !apt.has(n)).sort(),
        onlyApt: [...apt].filter((n) => !ours.has(n)).sort(),
        size: apt.size,
      };
    });
    for (const r of results) {
      const known = KNOWN_DIFFERENCES[r.req];
      assert.deepEqual(
        { onlyBerth: r.onlyBerth, onlyApt: r.onlyApt },
        { onlyBerth: known?.onlyBerth ?? [], onlyApt: known?.onlyApt ?? [] },
        `request "${r.req}" (apt installs ${r.size})`,
      );
    }
    assert.ok(
      results.find((r) => r.req === "postgresql")!.size > 20,
      "the oracle returned suspiciously little",
    );
  });

  test("--essential gives the package set of mmdebstrap --variant=essential", async () => {
    const ess = join(tempDir("berth-essroot-"), "root");
    await mmdebstrap(ess, "essential");
    const theirs = new Set((await readStatus(join(ess, "var/lib/dpkg/status"))).map((p) => p.name));
    const res = resolve(index, [], { essential: true });
    assert.deepEqual(res.packages.map((p) => p.name).sort(), [...theirs].sort());
    assert.deepEqual(res.conflicts, []);
  });

  test("each package has a chain back to the request, and the total size adds up", () => {
    const res = resolve(index, [{ name: "docker.io" }], { essential: true });
    for (const p of res.packages) {
      const chain = whyChain(res, p.name)!;
      assert.ok(
        ["requested", "essential"].includes(chain[0]!.reason.kind),
        `${p.name}: chain starts with ${chain[0]!.reason.kind}`,
      );
      for (let i = 1; i < chain.length; i++) {
        assert.equal(chain[i]!.reason.parent, chain[i - 1]!.name);
        assert.ok(
          chain[i]!.reason.relation!.includes(chain[i]!.name) ||
            index.providers(chain[i]!.reason.relation!.split(/[ |(]/)[0]!).length > 0,
        );
      }
    }
    const sum = res.packages.reduce((s, p) => s + p.installedSize * 1024, 0);
    assert.equal(res.installedBytes, sum);
    assert.ok(res.packages.some((p) => p.name === "runc"));
  });

  test("conflicts are reported; unknown and virtual requests are explained", () => {
    const both = resolve(index, [{ name: "exim4-daemon-light" }, { name: "postfix" }], { installed });
    assert.ok(
      both.conflicts.some((c) => /postfix|exim4/.test(c.message)),
      JSON.stringify(both.conflicts),
    );
    const unknown = resolve(index, [{ name: "no-such-package-berth" }], { installed });
    assert.match(unknown.unsatisfied[0]!.message, /not in the index/);
    const virtual = resolve(index, [{ name: "mail-transport-agent" }], { installed });
    assert.match(virtual.unsatisfied[0]!.message, /virtual package/);
  });

  test("`berth pkg resolve` on the live archive: table, --why chain and JSON", async () => {
    const why = await berth(["pkg", "resolve", "docker.io", "--why", "runc", "-q"]);
    assert.equal(why.code, 0, why.stderr);
    const json = await berth(["pkg", "resolve", "docker.io", "--why", "runc", "--json"]);
    const parsed = JSON.parse(json.stdout) as { chain: { name: string }[] };
    assert.equal(parsed.chain[0]!.name, "docker.io");
    assert.equal(parsed.chain.at(-1)!.name, "runc");
    const table = await berth(["pkg", "resolve", "openssh-server", "--essential"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /packages, .* installed/);
    const bad = await berth(["pkg", "resolve", "Not_A_Name"]);
    assert.equal(bad.code, 2);
    const missing = await berth(["pkg", "resolve", "no-such-package-berth"]);
    assert.equal(missing.code, 1);
  });
});
