// Kernel livepatch packages: a real livepatch module (built by `berth patch kernel build` against
// Debian trixie's kernel headers) published as a livepatch-kernel target, with the module name and
// kernel release modinfo (kmod) reads from it; `berth patch kernel load --from-repo` downloads it
// through the TUF client and refuses it on this machine, whose kernel is another release, before
// anything reaches the kernel; a byte changed on the mirror is refused at download. Loading a module
// into a matching kernel is test/patch/kernel.test.ts's job (QEMU); --from-repo hands it the same file.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { release } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ServedRepository } from "../../src/repo/serve.ts";
import { berth, isOneLineError, runSync, sharedFixture, tempDir } from "../helpers.ts";
import {
  freshTestRepository,
  mirrorWithChangedTarget,
  serveTestRepository,
  type TestRepository,
  testClient,
} from "../shared/repo.ts";

const PATCH = `#include <linux/seq_file.h>
static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
\tseq_printf(m, "%s\\n", "berth repo livepatch");
\treturn 0;
}
`;

describe("berth patch kernel load --from-repo", () => {
  const dir = tempDir("berth-repo-klp-");
  const env = { BERTH_REPO_STATE: join(dir, "repo-state") };
  let repo: TestRepository;
  let served: ServedRepository;
  let ko: string;
  let kernel: string;
  let name: string;

  before(async () => {
    const show = await berth(["pkg", "show", "linux-image-amd64", "--suite", "trixie", "--json", "-q"]);
    assert.equal(show.code, 0, show.stderr);
    kernel = /linux-image-(\S+)/.exec((JSON.parse(show.stdout) as { depends: string }[])[0]!.depends)![1]!;
    const built = await sharedFixture(
      `repo-livepatch-ko-${kernel.replace(/[^a-z0-9._-]/g, "_")}`,
      async (d) => {
        writeFileSync(join(d, "fix.c"), PATCH);
        const b = await berth([
          "patch",
          "kernel",
          "build",
          join(d, "fix.c"),
          "--kernel",
          kernel,
          "--name",
          "berth_repo_lp",
          "--out",
          d,
          "-q",
        ]);
        assert.equal(b.code, 0, b.stderr);
      },
    );
    ko = join(built, "berth_repo_lp.ko");
    repo = await freshTestRepository();
    const r = await berth([
      "repo",
      "add",
      repo.dir,
      "livepatch-kernel",
      ko,
      "--kernel",
      kernel,
      "--publish",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    name = Object.keys(JSON.parse(r.stdout).staged)[0]!;
    served = await serveTestRepository(repo.dir);
  });
  after(() => served?.close());

  const load = (url: string) =>
    berth(["patch", "kernel", "load", "--from-repo", url, name, "--trusted-root", repo.trustedRoot], { env });

  test("the target names the module and the kernel release as modinfo reads them", async () => {
    const modinfo = (field: string) => runSync("/sbin/modinfo", ["-F", field, ko]).stdout.trim();
    const vermagic = modinfo("vermagic");
    assert.ok(vermagic, "modinfo read no vermagic");
    assert.equal(modinfo("livepatch"), "Y");
    const t = (await testClient(served.url, repo.trustedRoot).target(name))!;
    assert.deepEqual(
      [t.custom.kind, t.custom.module, t.custom.kernelRelease, t.custom.replace],
      ["livepatch-kernel", modinfo("name"), vermagic.split(" ")[0], false],
    );
    assert.equal(name, `livepatch/kernel/${kernel}/berth_repo_lp.ko`);
    assert.equal(t.length, readFileSync(ko).length);
    const wrong = await berth([
      "repo",
      "add",
      repo.dir,
      "livepatch-kernel",
      ko,
      "--kernel",
      "6.1.0-99-amd64",
    ]);
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      new RegExp(`built for kernel ${kernel.replace(/[+.]/g, "\\$&")}, not 6\\.1\\.0-99-amd64`),
    );
  });

  test("a module for another kernel release is refused before it reaches the kernel", async () => {
    assert.notEqual(release(), kernel, "this test needs a host kernel other than the module's");
    const r = await load(served.url);
    assert.equal(r.code, 1);
    assert.ok(isOneLineError(r.stderr), r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `is built for kernel ${kernel.replace(/[+.]/g, "\\$&")}; this kernel is ${release().replace(/[+.]/g, "\\$&")}`,
      ),
    );
  });

  test("the module with one byte changed on the mirror is refused at download", async () => {
    const tree = await mirrorWithChangedTarget(repo, name, dir);
    const mirror = await serveTestRepository(tree);
    try {
      const r = await load(mirror.url);
      assert.equal(r.code, 1);
      assert.ok(isOneLineError(r.stderr), r.stderr);
      assert.match(
        r.stderr,
        /^berth: target livepatch\/kernel\/\S+ refused: its SHA-256 is not the one the targets metadata records/,
      );
    } finally {
      await mirror.close();
    }
  });
});
