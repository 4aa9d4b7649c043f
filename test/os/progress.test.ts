// Progress output when stderr is not a terminal (a pipe, a CI log, `./run demo > log`): one plain line per
// phase, stamped with the time since the command started, and one closing line per task with its duration,
// the way `docker build --progress=plain` writes a log. --quiet prints nothing; --json keeps stdout JSON
// and prints no progress either. The renderer is checked on its own with a mock clock, then through the
// real CLI downloading and parsing a real trixie index into an empty cache.

import assert from "node:assert/strict";
import { describe, mock, test } from "node:test";
import { PlainProgress, progressMode } from "../../src/cli/progress.ts";
import { berth, tempDir } from "../helpers.ts";

const PLAIN_LINE = /^\[ *(\d+\.\d)s\] (.+)$/;

describe("progress without a terminal", () => {
  test("notes and tasks become lines stamped with the time since the start; slow tasks announce themselves", () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      let now = 500;
      const out: string[] = [];
      const p = new PlainProgress(
        (t) => out.push(t),
        () => now,
      );
      now = 1700;
      p.note("verifying trixie");
      const slow = p.task("downloading 3 packages", 3_000_000, "bytes");
      now = 2700;
      mock.timers.tick(1000);
      slow.advance(1_000_000);
      slow.advance(2_000_000);
      now = 4700;
      slow.done();
      slow.done(); // a second done() (finally blocks) prints nothing more
      const fast = p.task("reading 2 files", 2);
      fast.advance(1);
      now = 4800;
      fast.done();
      mock.timers.tick(5000); // finished before its second was up: never announced
      assert.deepEqual(out, [
        "[   1.2s] verifying trixie\n",
        "[   2.2s] downloading 3 packages ...\n",
        "[   4.2s] downloading 3 packages: 3.00 MB done in 3.0 s\n",
        "[   4.3s] reading 2 files: 1 of 2 done in 0.1 s\n",
      ]);
    } finally {
      mock.timers.reset();
    }
  });

  test("--quiet and --json turn progress off; a terminal gets bars; BERTH_PROGRESS overrides", () => {
    assert.equal(progressMode({}, false, undefined), "plain");
    assert.equal(progressMode({}, true, undefined), "tty");
    assert.equal(progressMode({ quiet: true }, false, undefined), "none");
    assert.equal(progressMode({ json: true }, true, "plain"), "none");
    assert.equal(progressMode({}, true, "plain"), "plain");
    assert.equal(progressMode({}, false, "none"), "none");
    assert.equal(progressMode({}, false, "bogus"), "plain");
  });

  test("the CLI in a pipe: a line per phase with its time; -q silent; --json clean", async () => {
    // Each run gets an empty cache, so each really fetches, verifies and stores a (small) index.
    const args = ["pkg", "update", "--suite", "trixie-updates"];
    const plain = await berth(args, { env: { BERTH_CACHE: tempDir(), BERTH_PROGRESS: "" } });
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /trixie-updates .* main: verified/);
    const lines = plain.stderr.trim().split("\n");
    let last = 0;
    for (const l of lines) {
      const m = PLAIN_LINE.exec(l);
      assert.ok(m, `not a progress line: ${JSON.stringify(l)}`);
      assert.ok(Number(m[1]) >= last, `time went backwards: ${l}`);
      last = Number(m[1]);
    }
    assert.ok(
      lines.some((l) =>
        /\] trixie-updates main\/binary-amd64\/Packages\.\w+: [\d.]+ [kMG]?B done in [\d.]+ s$/.test(l),
      ),
      plain.stderr,
    );

    const quiet = await berth([...args, "-q"], { env: { BERTH_CACHE: tempDir() } });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, "");
    assert.equal(quiet.stdout, "");

    const json = await berth([...args, "--json"], { env: { BERTH_CACHE: tempDir() } });
    assert.equal(json.code, 0, json.stderr);
    assert.equal(json.stderr, "");
    assert.equal((JSON.parse(json.stdout) as { suite: string }[])[0]?.suite, "trixie-updates");
  });
});
