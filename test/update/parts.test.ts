// The parts of A/B updates that run without a VM: release versions, boot entry names and the loader's
// order, the release choice (versions, bad list, waves, maximum and migration path), state files, the
// ESP operations on a directory, the slot writer on a file, dm-verity with veritysetup as the oracle,
// and the boot-time shell scripts checked by the shell that runs them.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { sha256File } from "../../src/common/hash.ts";
import {
  entryFileName,
  entryOptions,
  entryText,
  parseEntryFileName,
  parseEntryText,
  slotOfOptions,
} from "../../src/os/boot-entry.ts";
import { parseProfile } from "../../src/os/profile.ts";
import { compareReleaseVersions, defaultReleaseVersion, isReleaseVersion } from "../../src/os/release.ts";
import { requiredUnits, updateFiles } from "../../src/os/update-files.ts";
import { formatVerity, verifySlot } from "../../src/os/verity.ts";
import type { OsReleaseCustom } from "../../src/repo/kinds/os-release.ts";
import {
  bootOrder,
  installEntry,
  preferSlot,
  readEntries,
  removeOrphanReleaseDirs,
  removeSlotEntries,
} from "../../src/update/esp.ts";
import { chooseRelease, type Release } from "../../src/update/releases.ts";
import { bootedFrom, hashRegion, writeSlot } from "../../src/update/slots.ts";
import {
  envFileText,
  parseEnvFile,
  readAttempt,
  readBad,
  writeAttempt,
  writeBad,
} from "../../src/update/state.ts";
import { slotStatuses } from "../../src/update/status.ts";
import { covers, nodeSeed, waveDecision } from "../../src/update/waves.ts";
import { runSync, tempDir } from "../helpers.ts";

const release = (version: string, extra: Partial<OsReleaseCustom> = {}): Release => ({
  version,
  target: `os/${version}/release.json`,
  custom: { kind: "os-release", member: "release", version, files: {}, waves: [], ...extra },
});

describe("release versions", () => {
  test("dated versions order number by number, not as text", () => {
    assert.ok(compareReleaseVersions("2026.12.10", "2026.12.9") > 0);
    assert.ok(compareReleaseVersions("2027.01.1", "2026.12.99") > 0);
    assert.equal(compareReleaseVersions("2026.12.1", "2026.12.01"), 0);
    for (const bad of ["2026.13.1", "26.12.1", "2026.12", "2026.12.1-rc1", "v2026.12.1"])
      assert.equal(isReleaseVersion(bad), false, bad);
  });

  test("the default version comes from the archive state, so one state gives one version", () => {
    const sde = Date.UTC(2026, 10, 25, 14, 30) / 1000;
    assert.equal(defaultReleaseVersion(sde), "2026.11.2514");
    assert.ok(compareReleaseVersions(defaultReleaseVersion(sde + 3600), defaultReleaseVersion(sde)) > 0);
  });
});

describe("boot entries", () => {
  const r = {
    version: "2026.12.2",
    verity: { rootHash: "ab".repeat(32), hashOffset: 4096 },
    bootOptions: ["panic=10"],
  };

  test("file names carry systemd's boot counter and parse back", () => {
    assert.equal(
      entryFileName({ version: "2026.12.2", tries: { left: 3, done: 0 } }),
      "berth-2026.12.2+3-0.conf",
    );
    assert.deepEqual(parseEntryFileName("berth-2026.12.2+2-1.conf"), {
      version: "2026.12.2",
      tries: { left: 2, done: 1 },
    });
    // systemd-boot reads a missing -DONE as 0.
    assert.deepEqual(parseEntryFileName("berth-2026.12.2+3.conf"), {
      version: "2026.12.2",
      tries: { left: 3, done: 0 },
    });
    assert.deepEqual(parseEntryFileName("berth-2026.12.2.conf"), { version: "2026.12.2" });
    assert.equal(parseEntryFileName("other.conf"), undefined);
  });

  test("the entry boots its slot with the verity root hash on the command line", () => {
    const text = entryText(r, "b", true);
    const f = parseEntryText(text);
    assert.equal(f["sort-key"], "berth-1");
    assert.equal(f.linux, "/berth/2026.12.2/vmlinuz");
    assert.equal(slotOfOptions(f.options!), "b");
    assert.match(
      f.options!,
      new RegExp(`berth.verity.roothash=${"ab".repeat(32)} berth.verity.hashoffset=4096`),
    );
    assert.deepEqual(bootedFrom(`BOOT_IMAGE=x ${entryOptions(r, "b")}`), { slot: "b", release: "2026.12.2" });
  });

  test("loader order: entries with tries left first, then the preferred sort key, then newest", () => {
    const e = (file: string, sortKey: string, slot: "a" | "b") => ({
      ...parseEntryFileName(file)!,
      file,
      sortKey,
      slot,
      options: "",
      preferred: false,
    });
    assert.deepEqual(
      bootOrder([
        e("berth-2026.12.1.conf", "berth-2", "a"),
        e("berth-2026.12.2+3-0.conf", "berth-1", "b"),
      ]).map((x) => x.version),
      ["2026.12.2", "2026.12.1"],
    );
    // Tries run out: the fallback boots although its sort key says otherwise.
    assert.deepEqual(
      bootOrder([
        e("berth-2026.12.2+0-3.conf", "berth-1", "b"),
        e("berth-2026.12.1.conf", "berth-2", "a"),
      ]).map((x) => x.version),
      ["2026.12.1", "2026.12.2"],
    );
    // A rollback to an older release: the sort key wins over the version.
    assert.deepEqual(
      bootOrder([e("berth-2026.12.2.conf", "berth-2", "b"), e("berth-2026.12.1.conf", "berth-1", "a")]).map(
        (x) => x.version,
      ),
      ["2026.12.1", "2026.12.2"],
    );
  });
});

describe("choosing a release", () => {
  const releases = [release("2026.12.4"), release("2026.12.3"), release("2026.12.2"), release("2026.12.1")];
  const base = { releases, current: "2026.12.2", bad: [], seed: 100 };

  test("the newest newer release, skipping bad ones and those beyond the maximum", () => {
    assert.equal(chooseRelease(base).release?.version, "2026.12.4");
    assert.equal(chooseRelease({ ...base, bad: ["2026.12.4"] }).release?.version, "2026.12.3");
    assert.equal(chooseRelease({ ...base, maxVersion: "2026.12.3" }).release?.version, "2026.12.3");
    const none = chooseRelease({ ...base, bad: ["2026.12.3", "2026.12.4"] });
    assert.equal(none.release, undefined);
    assert.match(none.summary, /2026\.12\.4 failed on this node before/);
    assert.match(chooseRelease({ ...base, current: "2026.12.4" }).summary, /up to date/);
    assert.equal(
      chooseRelease({ ...base, bad: ["2026.12.4"], retryBad: true }).release?.version,
      "2026.12.4",
    );
  });

  test("an explicit version: downgrades and bad releases only when asked", () => {
    assert.throws(() => chooseRelease({ ...base, version: "2026.12.1" }), /--allow-downgrade/);
    assert.equal(
      chooseRelease({ ...base, version: "2026.12.1", allowDowngrade: true }).release?.version,
      "2026.12.1",
    );
    assert.throws(() => chooseRelease({ ...base, version: "2026.12.3", bad: ["2026.12.3"] }), /--retry/);
    assert.throws(() => chooseRelease({ ...base, version: "2026.12.9" }), /not in the repository/);
    assert.equal(chooseRelease({ ...base, version: "2026.12.2" }).release, undefined);
  });

  test("a release that needs a newer starting point is skipped for the one that is its path", () => {
    const rs = [
      release("2026.12.4", {
        update: { bootOptions: [], tries: 3, images: [], migrations: [], minimumFrom: "2026.12.3" },
      }),
      release("2026.12.3"),
    ];
    const c = chooseRelease({ ...base, releases: rs });
    assert.equal(c.release?.version, "2026.12.3");
    assert.match(c.skipped[0]!.why, /applied on 2026\.12\.3 or newer/);
    assert.equal(
      chooseRelease({ ...base, releases: rs, current: "2026.12.3" }).release?.version,
      "2026.12.4",
    );
  });

  test("waves: a seed in the open share takes it, another waits until its wave starts", () => {
    const now = new Date("2026-12-10T12:00:00Z");
    const waves = [
      { start: "2026-12-10T00:00:00Z", percent: 10 },
      { start: "2026-12-11T00:00:00Z", percent: 100 },
    ];
    const rs = [release("2026.12.3", { waves })];
    assert.equal(covers(10, 204), true);
    assert.equal(covers(10, 205), false);
    assert.equal(chooseRelease({ ...base, releases: rs, seed: 100, now }).release?.version, "2026.12.3");
    const held = chooseRelease({ ...base, releases: rs, seed: 1500, now });
    assert.equal(held.release, undefined);
    assert.equal(held.skipped[0]!.opensAt, "2026-12-11T00:00:00Z");
    assert.match(held.summary, /opens to this node at 2026-12-11T00:00:00Z/);
    assert.equal(
      chooseRelease({ ...base, releases: rs, seed: 1500, now, ignoreWaves: true }).release?.version,
      "2026.12.3",
    );
    assert.equal(
      chooseRelease({ ...base, releases: rs, seed: 1500, now: new Date("2026-12-11T00:00:01Z") }).release
        ?.version,
      "2026.12.3",
    );
    assert.deepEqual(waveDecision([], 2047), { open: true, percent: 100 });
  });

  test("a node keeps its seed", async () => {
    const dir = tempDir();
    const s = await nodeSeed(dir);
    assert.ok(s >= 0 && s < 2048);
    assert.equal(await nodeSeed(dir), s);
  });
});

describe("state files", () => {
  test("KEY=value files round-trip and append", async () => {
    assert.deepEqual(parseEnvFile(envFileText({ VERSION: "2026.12.3", SLOT: "a", X: undefined })), {
      VERSION: "2026.12.3",
      SLOT: "a",
    });
    const dir = tempDir();
    await writeAttempt({ version: "2026.12.3", slot: "a", from: "2026.12.2", started: "t0" }, dir);
    writeFileSync(
      join(dir, "attempt"),
      `${readFileSync(join(dir, "attempt"), "utf8")}RESULT=bad\nBOOTED=2026.12.2\n`,
    );
    assert.deepEqual(readAttempt(dir), {
      version: "2026.12.3",
      slot: "a",
      from: "2026.12.2",
      started: "t0",
      result: "bad",
      resolved: undefined,
      booted: "2026.12.2",
    });
    await writeBad(["2026.12.3", "2026.12.3", "2026.12.4"], dir);
    assert.deepEqual(readBad(dir), ["2026.12.3", "2026.12.4"]);
  });
});

describe("the ESP on a directory", () => {
  const r = (version: string) => ({
    version,
    verity: { rootHash: "cd".repeat(32), hashOffset: 8192 },
    bootOptions: ["console=ttyS0"],
  });

  test("install, prefer, fall back, remove: what the loader would boot at each step", async () => {
    const esp = tempDir();
    const files = tempDir();
    writeFileSync(join(files, "vmlinuz"), "kernel");
    writeFileSync(join(files, "initrd.img"), "initrd");
    mkdirSync(join(esp, "loader/entries"), { recursive: true });
    // Slot A as the build writes it: good, preferred.
    writeFileSync(
      join(esp, "loader/entries", entryFileName({ version: "2026.12.1" })),
      entryText(r("2026.12.1"), "a", true),
    );
    const file = await installEntry(esp, {
      release: r("2026.12.2"),
      slot: "b",
      kernel: join(files, "vmlinuz"),
      initrd: join(files, "initrd.img"),
      tries: 3,
    });
    assert.equal(file, "berth-2026.12.2+3-0.conf");
    await preferSlot(esp, "b");
    let entries = readEntries(esp);
    assert.equal(entries.find((e) => e.preferred)?.version, "2026.12.2");
    assert.equal(readFileSync(join(esp, "berth/2026.12.2/vmlinuz"), "utf8"), "kernel");
    assert.deepEqual(
      slotStatuses(entries, "a", [], undefined).map((s) => [s.slot, s.release, s.state, s.next]),
      [
        ["a", "2026.12.1", "good", false],
        ["b", "2026.12.2", "trying", true],
      ],
    );
    // The loader counts the tries down to 0: the fallback boots, the release is bad.
    const { renameSync } = await import("node:fs");
    renameSync(join(esp, "loader/entries", file), join(esp, "loader/entries/berth-2026.12.2+0-3.conf"));
    entries = readEntries(esp);
    assert.equal(entries.find((e) => e.preferred)?.version, "2026.12.1");
    assert.equal(slotStatuses(entries, "a", [], undefined)[1]!.state, "bad");
    // The next apply removes slot B's entry first: slot A alone boots, slot B is incomplete meanwhile.
    assert.deepEqual(await removeSlotEntries(esp, "b"), ["2026.12.2"]);
    assert.equal(existsSync(join(esp, "berth/2026.12.2")), false);
    entries = readEntries(esp);
    assert.deepEqual(
      entries.map((e) => e.version),
      ["2026.12.1"],
    );
    assert.equal(
      slotStatuses(entries, "a", [], { slot: "b", version: "2026.12.3", started: "" })[1]!.state,
      "incomplete",
    );
    mkdirSync(join(esp, "berth/2026.12.9"), { recursive: true });
    await removeOrphanReleaseDirs(esp);
    assert.deepEqual(readdirSync(join(esp, "berth")), []);
    await assert.rejects(preferSlot(esp, "b"), /slot b has no boot entry/);
  });
});

describe("slots and dm-verity", () => {
  test("a squashfs with its hash tree in a slot: veritysetup verifies it, and refuses a flipped byte", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "tree/etc"), { recursive: true });
    writeFileSync(join(dir, "tree/etc/hello"), "hello\n".repeat(20000));
    assert.equal(
      runSync("mksquashfs", [join(dir, "tree"), join(dir, "root.squashfs"), "-quiet", "-no-progress"]).code,
      0,
    );
    const v = await formatVerity(join(dir, "root.squashfs"), join(dir, "root.verity"), "test-seed");
    assert.match(v.rootHash, /^[0-9a-f]{64}$/);
    // Deterministic: the same image and seed give the same tree.
    const again = await formatVerity(join(dir, "root.squashfs"), join(dir, "again.verity"), "test-seed");
    assert.equal(again.rootHash, v.rootHash);
    // A "slot": a file bigger than data + tree.
    const slot = join(dir, "slot.img");
    writeFileSync(slot, Buffer.alloc(v.hashOffset + v.hashBytes + 65536));
    const parts = [
      {
        file: join(dir, "root.squashfs"),
        offset: 0,
        length: v.dataBytes,
        sha256: await sha256File(join(dir, "root.squashfs")),
      },
      {
        file: join(dir, "root.verity"),
        offset: v.hashOffset,
        length: v.hashBytes,
        sha256: await sha256File(join(dir, "root.verity")),
      },
    ];
    await writeSlot(slot, parts);
    await verifySlot(slot, v);
    assert.equal(await hashRegion(slot, 0, v.dataBytes), parts[0]!.sha256);
    // A metadata hash that the bytes do not have is refused after the read-back.
    await assert.rejects(
      writeSlot(slot, [{ ...parts[0]!, sha256: "0".repeat(64) }]),
      /are not the release's/,
    );
    // One byte changed in the slot: veritysetup (the oracle) refuses it.
    const bytes = readFileSync(slot);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(slot, bytes);
    await assert.rejects(verifySlot(slot, v), /veritysetup verify failed/);
  });
});

describe("what berth-base carries for updates", () => {
  const profile = parseProfile(
    [
      "name: t",
      "services:",
      "  enable: [ssh.service]",
      "update:",
      "  repository: http://10.0.2.2:8080/",
      "  health:",
      "    units: [extra.service]",
      "    commands: ['test -e /etc/hostname']",
      "  migrations:",
      "    - id: m1",
      "      up: echo up",
      "      down: echo down",
    ].join("\n"),
    "t.yaml",
  );
  const files = updateFiles(profile, {
    version: "2026.12.3",
    sourceDateEpoch: 1,
    trustedRoot: Buffer.from("{}"),
  });
  const file = (p: string) => files.find((f) => f.path === p);

  test("the repository, the release facts, the required units, checks and migrations", () => {
    assert.equal(file("usr/lib/berth/repository/url")?.content, "http://10.0.2.2:8080/\n");
    assert.equal(JSON.parse(String(file("usr/lib/berth/update.json")?.content)).version, "2026.12.3");
    assert.ok(requiredUnits(profile).includes("ssh.service"));
    assert.ok(requiredUnits(profile).includes("docker.service"));
    assert.ok(requiredUnits(profile).includes("extra.service"));
    assert.match(String(file("usr/lib/berth/health.d/50-profile-01")?.content), /test -e \/etc\/hostname/);
    assert.equal(file("usr/lib/berth/migrations/order")?.content, "m1\n");
  });

  test("the boot-time scripts are valid for the shells that run them", () => {
    const dir = tempDir();
    for (const f of files.filter((x) => x.mode === 0o755)) {
      const p = join(dir, f.path.replace(/\//g, "_"));
      writeFileSync(p, f.content);
      for (const sh of ["dash", "bash"]) {
        const r = runSync(sh, ["-n", p]);
        assert.equal(r.code, 0, `${sh} -n ${f.path}: ${r.stderr}`);
      }
    }
  });

  test("the update key is checked like the rest of the profile", () => {
    assert.throws(
      () => parseProfile("name: x\nupdate:\n  repository: ftp://x\n", "t.yaml"),
      /update\.repository/,
    );
    assert.throws(() => parseProfile("name: x\nupdate:\n  tries: 0\n", "t.yaml"), /update\.tries/);
    assert.throws(
      () =>
        parseProfile(
          "name: x\nupdate:\n  migrations:\n    - {id: a, up: x, down: y}\n    - {id: a, up: x, down: y}\n",
          "t.yaml",
        ),
      /migration "a" is declared twice/,
    );
    assert.equal(parseProfile("name: x\n").update.tries, 3);
  });
});
