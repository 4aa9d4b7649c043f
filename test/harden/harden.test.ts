// berth harden on real systems: a trixie root made by mmdebstrap with planted problems is found,
// fixed and rolled back byte for byte (whole-tree digest with modes, owners and mtimes); an apply cut
// short by SIGKILL rolls back too; containers with bad settings on the local Docker engine are found;
// an offline root gives the root's results, never the host's.

import assert from "node:assert/strict";
import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { treeDigest } from "../../src/common/tree-digest.ts";
import { berth, isOneLineError, run, runSync, tempDir } from "../helpers.ts";

const MIRROR = "http://deb.debian.org/debian";
const IMAGE = "berth-harden-test:1";

interface Result {
  id: string;
  status: string;
  evidence?: string;
  items?: string[];
}
interface Assessment {
  kind: string;
  summary: { score: number; rules: number; failed: number };
  results: (Result & { category: string })[];
}

async function check(target: string, extra: string[] = []): Promise<Assessment> {
  const r = await berth(["harden", "check", "--target", target, "--json", ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Assessment;
}

const status = (a: Assessment, id: string) => {
  const r = a.results.find((x) => x.id === id);
  assert.ok(r, `no result for ${id}`);
  return r;
};

describe("berth harden", () => {
  const dir = tempDir("berth-harden-");
  const root = join(dir, "root");
  const state = join(dir, "state");

  before(async () => {
    const mm = await run("mmdebstrap", [
      "--variant=minbase",
      "--include=openssh-server,sudo,busybox",
      "trixie",
      root,
      MIRROR,
    ]);
    assert.equal(mm.code, 0, mm.stderr.slice(-1500));
    // Planted problems, one per kind of rule.
    chmodSync(join(root, "etc/shadow"), 0o644);
    writeFileSync(
      join(root, "etc/sysctl.d/50-bad.conf"),
      "kernel.kptr_restrict = 0\nkernel.dmesg_restrict = 0\nnet.ipv4.conf.all.accept_redirects = 1\n",
    );
    writeFileSync(
      join(root, "etc/ssh/sshd_config.d/50-bad.conf"),
      "PermitRootLogin yes\nX11Forwarding yes\nMaxAuthTries 10\n",
    );
    mkdirSync(join(root, "srv/data"), { recursive: true });
    writeFileSync(join(root, "srv/data/open.txt"), "anyone\n");
    chmodSync(join(root, "srv/data/open.txt"), 0o666);
    writeFileSync(join(root, "usr/local/bin/backdoor"), "#!/bin/sh\n");
    chmodSync(join(root, "usr/local/bin/backdoor"), 0o4755);
    appendFileSync(join(root, "etc/passwd"), "toor:x:0:0::/root:/bin/sh\n");
    writeFileSync(
      join(root, "usr/lib/systemd/system/avahi-daemon.service"),
      "[Unit]\nDescription=planted\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    );
    symlinkSync(
      "/usr/lib/systemd/system/avahi-daemon.service",
      join(root, "etc/systemd/system/multi-user.target.wants/avahi-daemon.service"),
    );
    mkdirSync(join(root, "etc/docker"));
    writeFileSync(
      join(root, "etc/docker/daemon.json"),
      '{\n  "icc": true,\n  "insecure-registries": ["registry.local:5000"]\n}\n',
    );
    // Stands in for the daemon binary so the daemon.json rules apply without installing Docker.
    writeFileSync(join(root, "usr/sbin/dockerd"), "");
    const imp = await run("bash", ["-c", `tar -C ${root} -c . | docker import - ${IMAGE}`]);
    assert.equal(imp.code, 0, imp.stderr);
  });

  after(() => {
    runSync("docker", ["rm", "-f", "berth-harden-bad", "berth-harden-good", "berth-harden-priv"]);
    runSync("docker", ["rmi", "-f", IMAGE]);
  });

  test("the rule set: over 200 rules, unique IDs, every rule with a reference and advice", async () => {
    const r = await berth(["harden", "rules", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const rules = JSON.parse(r.stdout) as { id: string; refs: string[]; fix: boolean; title: string }[];
    assert.ok(rules.length >= 200, `${rules.length} rules`);
    assert.equal(new Set(rules.map((x) => x.id)).size, rules.length, "duplicate rule IDs");
    for (const x of rules) assert.ok(x.refs.length > 0 && x.title, x.id);
    assert.ok(rules.filter((x) => x.fix).length >= 100, "fewer than 100 rules have a fix");
  });

  test("an offline root: planted problems are found, from the root's files only", async () => {
    const a = await check(root);
    assert.equal(a.kind, "root");
    assert.equal(status(a, "perm-etc-shadow").status, "fail");
    assert.match(status(a, "sysctl-kernel-kptr-restrict").evidence!, /persisted 0/);
    assert.match(status(a, "sysctl-kernel-dmesg-restrict").evidence!, /persisted 0/);
    assert.equal(status(a, "ssh-permit-root-login").status, "fail");
    assert.equal(status(a, "ssh-x11-forwarding").status, "fail");
    assert.ok(status(a, "fs-world-writable-files").items!.some((i) => i.startsWith("/srv/data/open.txt")));
    assert.ok(status(a, "fs-suid-unexpected").items!.some((i) => i.startsWith("/usr/local/bin/backdoor")));
    assert.deepEqual(status(a, "accounts-uid0-root-only").items, ["toor"]);
    assert.equal(status(a, "service-avahi-daemon-off").status, "fail");
    assert.equal(status(a, "docker-daemon-icc").status, "fail");
    assert.equal(status(a, "docker-daemon-insecure-registries").status, "fail");
    assert.equal(status(a, "module-cramfs-disabled").status, "fail");
    // Nothing comes from the running host: no run-time values, no loaded modules, no host containers.
    for (const r of a.results) assert.doesNotMatch(r.evidence ?? "", /running |loaded now/, r.id);
    assert.ok(!a.results.some((r) => r.category === "containers"), "container rules ran on a root");
    // The host itself answers differently for the same rule.
    const host = await check("host");
    assert.equal(host.kind, "host");
    assert.doesNotMatch(status(host, "accounts-uid0-root-only").evidence!, /toor/);
  });

  test("apply: dry run shows every change and changes nothing; the lock-out guard holds", async () => {
    const before = await treeDigest(root, { mtimes: true });
    const r = await berth(["harden", "apply", "--target", root, "--dry-run", "--state", state]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\+\+\+ b\/etc\/sysctl\.d\/zz-berth-harden\.conf/);
    assert.match(r.stdout, /^\+kernel\.kptr_restrict = 1$/m);
    assert.match(r.stdout, /\/etc\/shadow: mode 0644 -> 0640/);
    assert.match(r.stdout, /^\+X11Forwarding no$/m);
    assert.match(r.stdout, /^-\s+"icc": true,$/m);
    assert.match(r.stdout, /refused ssh-permit-root-login: no non-root administrator/);
    assert.equal(await treeDigest(root, { mtimes: true }), before, "the dry run changed the root");
  });

  test("apply, check, apply again (no-op), rollback: the root is byte-identical", async () => {
    const before = await treeDigest(root, { mtimes: true });
    const scoreBefore = (await check(root)).summary.score;
    const r = await berth(["harden", "apply", "--target", root, "--state", state, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      run: string;
      scoreBefore: number;
      scoreAfter: number;
      refused: { id: string }[];
    };
    assert.ok(out.run);
    assert.ok(out.scoreAfter > scoreBefore, `${scoreBefore} -> ${out.scoreAfter}`);
    const a = await check(root);
    for (const id of [
      "perm-etc-shadow",
      "sysctl-kernel-kptr-restrict",
      "ssh-x11-forwarding",
      "ssh-max-auth-tries",
      "service-avahi-daemon-off",
      "docker-daemon-icc",
      "module-cramfs-disabled",
      "login-defs-pass-max-days",
      "pam-no-nullok",
    ])
      assert.notEqual(status(a, id).status, "fail", `${id} still fails: ${status(a, id).evidence}`);
    assert.equal(status(a, "ssh-permit-root-login").status, "fail", "the guard let root login be closed");
    // What sshd itself makes of the result.
    const sshd = runSync("chroot", [root, "/usr/sbin/sshd", "-T", "-f", "/etc/ssh/sshd_config"]);
    if (sshd.code === 0) assert.match(sshd.stdout, /^x11forwarding no$/m);
    const daemon = JSON.parse(readFileSync(join(root, "etc/docker/daemon.json"), "utf8"));
    assert.equal(daemon.icc, false);
    assert.deepEqual(daemon["insecure-registries"], ["registry.local:5000"], "unrelated keys kept");

    const again = await berth(["harden", "apply", "--target", root, "--state", state]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nothing to change/);
    const runs = JSON.parse(
      (await berth(["harden", "runs", "--json", "--state", state])).stdout,
    ) as unknown[];
    assert.equal(runs.length, 1, "a second apply recorded a run");

    const rb = await berth(["harden", "rollback", out.run, "--state", state]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(
      await treeDigest(root, { mtimes: true }),
      before,
      "rollback did not restore the root exactly",
    );
    const twice = await berth(["harden", "rollback", out.run, "--state", state]);
    assert.equal(twice.code, 1);
    assert.ok(isOneLineError(twice.stderr), twice.stderr);
  });

  test("with an administrator's key in place, root login is closed too", async () => {
    const before = await treeDigest(root, { mtimes: true });
    appendFileSync(join(root, "etc/passwd"), "admin:x:1500:1500::/home/admin:/bin/bash\n");
    const group = readFileSync(join(root, "etc/group"), "utf8").replace(
      /^sudo:x:(\d+):(.*)$/m,
      (_, gid: string, m: string) => `sudo:x:${gid}:${m ? `${m},` : ""}admin`,
    );
    writeFileSync(join(root, "etc/group"), group);
    mkdirSync(join(root, "home/admin/.ssh"), { recursive: true });
    writeFileSync(
      join(root, "home/admin/.ssh/authorized_keys"),
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBerthTestKeyBerthTestKeyBerthTestKey00 admin\n",
    );
    const r = await berth(["harden", "apply", "--target", root, "--state", state, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { run: string; refused: { id: string }[] };
    assert.ok(!out.refused.some((x) => x.id === "ssh-permit-root-login"));
    assert.notEqual(status(await check(root), "ssh-permit-root-login").status, "fail");
    const rb = await berth(["harden", "rollback", "--target", root, "--state", state]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.notEqual(
      await treeDigest(root, { mtimes: true }),
      before,
      "sanity: the admin account was added after the digest",
    );
    const st = readFileSync(join(root, "etc/ssh/sshd_config.d/50-bad.conf"), "utf8");
    assert.match(st, /PermitRootLogin yes/);
    assert.equal(readdirSync(join(root, "etc/ssh/sshd_config.d")).includes("00-berth-harden.conf"), false);
  });

  test("an apply killed half-way rolls back exactly; a file changed after apply is not overwritten without --force", async () => {
    const before = await treeDigest(root, { mtimes: true });
    const killed = await berth(["harden", "apply", "--target", root, "--state", state], {
      env: { BERTH_HARDEN_KILL_AFTER: "3" },
    });
    assert.notEqual(killed.code, 0);
    assert.notEqual(
      await treeDigest(root, { mtimes: true }),
      before,
      "the killed apply changed nothing: the test proves nothing",
    );
    const rb = await berth(["harden", "rollback", "--target", root, "--state", state]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(await treeDigest(root, { mtimes: true }), before);

    const r = await berth(["harden", "apply", "--target", root, "--state", state, "--json"]);
    const run = (JSON.parse(r.stdout) as { run: string }).run;
    appendFileSync(join(root, "etc/sysctl.d/zz-berth-harden.conf"), "# edited by an administrator\n");
    const refused = await berth(["harden", "rollback", run, "--state", state]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /zz-berth-harden\.conf changed since run/);
    assert.ok(isOneLineError(refused.stderr), refused.stderr);
    const forced = await berth(["harden", "rollback", run, "--state", state, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await treeDigest(root, { mtimes: true }), before);
  });

  test("containers and images on the local Docker engine", async () => {
    const bad = await run("docker", [
      "run",
      "-d",
      "--name",
      "berth-harden-bad",
      "--pid",
      "host",
      "--cap-add",
      "SYS_ADMIN",
      "-v",
      "/var/run/docker.sock:/var/run/docker.sock",
      "-e",
      "DB_PASSWORD=hunter2",
      IMAGE,
      "sleep",
      "300",
    ]);
    assert.equal(bad.code, 0, bad.stderr);
    const good = await run("docker", [
      "run",
      "-d",
      "--name",
      "berth-harden-good",
      "--read-only",
      "--cgroupns",
      "private",
      "--user",
      "65534:65534",
      "--memory",
      "64m",
      "--pids-limit",
      "64",
      "--cpus",
      "0.5",
      "--cap-drop",
      "ALL",
      "--security-opt",
      "no-new-privileges",
      "--health-cmd",
      "true",
      IMAGE,
      "sleep",
      "300",
    ]);
    assert.equal(good.code, 0, good.stderr);
    // This sandbox's bounding set lacks CAP_SYS_RESOURCE, so a privileged container cannot start here;
    // a created one is inspected just the same.
    const priv = await run("docker", [
      "create",
      "--name",
      "berth-harden-priv",
      "--privileged",
      IMAGE,
      "true",
    ]);
    assert.equal(priv.code, 0, priv.stderr);
    assert.equal(status(await check("container:berth-harden-priv"), "container-privileged").status, "fail");
    const b = await check("container:berth-harden-bad");
    assert.equal(b.kind, "container");
    for (const id of [
      "container-host-pid",
      "container-dangerous-caps",
      "container-docker-socket",
      "container-secrets-in-env",
      "container-memory-limit",
      "container-non-root",
    ])
      assert.equal(status(b, id).status, "fail", id);
    const g = await check("container:berth-harden-good");
    for (const r of g.results) assert.notEqual(r.status, "fail", `${r.id}: ${r.evidence}`);
    // The host check sees every running container.
    const host = await check("host");
    assert.ok(status(host, "container-docker-socket").items!.some((i) => i.startsWith("berth-harden-bad")));
    assert.ok(!status(host, "container-memory-limit").items!.some((i) => i.startsWith("berth-harden-good")));
    const img = await check(`image:${IMAGE}`);
    assert.equal(img.kind, "image");
    assert.equal(status(img, "image-non-root-user").status, "fail");
    assert.ok(status(img, "image-setuid-files").items!.some((i) => i.startsWith("/usr/local/bin/backdoor")));
    assert.deepEqual(status(img, "accounts-uid0-root-only").items, ["toor"]);
  });

  test("check: SARIF, --fail-under, and bad input", async () => {
    const sarif = await berth(["harden", "check", "--target", root, "--format", "sarif"]);
    assert.equal(sarif.code, 0, sarif.stderr);
    const doc = JSON.parse(sarif.stdout) as { version: string; runs: { results: { ruleId: string }[] }[] };
    assert.equal(doc.version, "2.1.0");
    assert.ok(doc.runs[0]!.results.some((r) => r.ruleId === "perm-etc-shadow"));
    const under = await berth(["harden", "check", "--target", root, "--fail-under", "100", "-q"]);
    assert.equal(under.code, 1);
    assert.match(under.stderr, /score \d+ is under 100/);
    for (const args of [
      ["harden", "check", "--target", "/nonexistent"],
      ["harden", "check", "--profile", "nope"],
      ["harden", "check", "--fail-under", "abc"],
      ["harden", "apply", "--target", "image:x"],
      ["harden", "rollback", "no-such-run", "--state", state],
    ]) {
      const r = await berth(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.ok(isOneLineError(r.stderr), r.stderr);
    }
  });
});
