// The test runner behind `npm test`: every *.test.ts under test/ runs, without a list of folders to
// keep up to date. Files under test/host/ change this machine (live hardening, a dockerd restart), so
// they run after the rest, on their own. A file that exists but reported no test fails the suite: a
// new folder, a file that forgot to register its tests, or a whole file skipped cannot pass silently.
//
//   node scripts/test.ts                 the whole suite
//   node scripts/test.ts test/images     only the files under the given paths (same checks)
//   BERTH_TEST_CONCURRENCY=1             files run one at a time (default 2, this machine's cores)

import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
const REPORTER = fileURLToPath(new URL("./test-files-reporter.ts", import.meta.url));

export function findTestFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === "node_modules" || e.name.startsWith(".")) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith(".test.ts")) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** Runs node --test on the files; resolves with its exit code and the files that reported a test. */
function runNodeTest(files: string[], concurrency: number): Promise<{ code: number; reported: Set<string> }> {
  const work = mkdtempSync(join(tmpdir(), "berth-test-"));
  const record = join(work, "files.jsonl");
  return new Promise((res, rej) => {
    const child = spawn(
      process.execPath,
      [
        "--test",
        `--test-concurrency=${concurrency}`,
        // A file whose tests are done ends even when something it started still holds the event loop
        // (a server left behind by a failed setup would otherwise keep the whole run waiting).
        "--test-force-exit",
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
        `--test-reporter=${REPORTER}`,
        `--test-reporter-destination=${record}`,
        ...files,
      ],
      // A runner started from inside a test (the runner's own tests) must not report to that test's
      // parent as a child of node --test would.
      { stdio: "inherit", cwd: ROOT, env: { ...process.env, NODE_TEST_CONTEXT: undefined } },
    );
    child.on("error", rej);
    child.on("close", (code, signal) => {
      const reported = new Set<string>();
      try {
        for (const line of readFileSync(record, "utf8").split("\n"))
          if (line.trim()) reported.add(resolve(JSON.parse(line) as string));
      } catch {}
      rmSync(work, { recursive: true, force: true });
      res({ code: code ?? (signal ? 128 : 1), reported });
    });
  });
}

export async function runSuite(testDir: string, only: string[], concurrency: number): Promise<number> {
  const all = findTestFiles(testDir);
  const selected = only.length
    ? all.filter((f) => only.some((o) => f === resolve(o) || f.startsWith(resolve(o) + sep)))
    : all;
  if (selected.length === 0) {
    process.stderr.write(`test: no *.test.ts files under ${only.length ? only.join(", ") : testDir}\n`);
    return 2;
  }
  // Expensive fixtures (built images, signed repositories) are shared by every file of this run through
  // test/helpers.ts's sharedFixture, in one directory removed at the end.
  const shared = mkdtempSync(join(tmpdir(), "berth-shared-"));
  process.env.BERTH_TEST_SHARED = shared;
  const hostDir = join(testDir, "host") + sep;
  const groups = [
    selected.filter((f) => !f.startsWith(hostDir)),
    selected.filter((f) => f.startsWith(hostDir)),
  ];
  let code = 0;
  const silent: string[] = [];
  for (const [i, files] of groups.entries()) {
    if (files.length === 0) continue;
    // test/host/ runs one file at a time: each one changes the machine the others would observe.
    const r = await runNodeTest(files, i === 0 ? concurrency : 1);
    if (r.code !== 0) code = r.code;
    for (const f of files) if (!r.reported.has(f)) silent.push(relative(process.cwd(), f));
  }
  rmSync(shared, { recursive: true, force: true });
  if (silent.length) {
    process.stderr.write(
      `test: ${silent.length} test file(s) ran no test (each file must run at least one): ${silent.join(", ")}\n`,
    );
    code = code || 1;
  }
  return code;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const dirFlag = args.indexOf("--dir");
  let testDir = join(ROOT, "test");
  if (dirFlag >= 0) {
    testDir = resolve(args[dirFlag + 1] ?? "");
    args.splice(dirFlag, 2);
  }
  if (!statSync(testDir, { throwIfNoEntry: false })?.isDirectory()) {
    process.stderr.write(`test: no such directory: ${testDir}\n`);
    process.exit(2);
  }
  const concurrency = Number(process.env.BERTH_TEST_CONCURRENCY ?? 2) || 2;
  process.exitCode = await runSuite(testDir, args, concurrency);
}
