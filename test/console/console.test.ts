// The web console in a real browser: playwright-core drives Debian's /usr/bin/chromium against a real
// `berth server` with simulated nodes (real packages of this machine, matched against an advisory
// database). It signs in, filters the hosts to those a CVE affects (the count checked against the
// nodes that have the package), opens one from the keyboard, starts a rollout and pauses it (checked
// through the API), and finds no Content-Security-Policy violation on the way. Screenshots are kept in
// out/console-screenshots/ (gitignored; CI keeps them as artefacts).

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { rng, SimulatedNode, simulatedSnapshot } from "../../src/agent/simulate.ts";
import type { Rollout } from "../../src/server/api-schemas.ts";
import { mapLimit, ROOT, run, tempDir } from "../helpers.ts";
import {
  advisoryDb,
  api,
  hostPool,
  initFleetDb,
  type ServerProcess,
  sqliteDatabase,
  startServerProcess,
} from "../server/fleet.ts";

const SHOTS = join(ROOT, "out/console-screenshots");
const CVE = "CVE-2099-0001"; // bash, fixed in 99:1-1: every installed bash has it (test/fixtures/scan)

describe("the web console", () => {
  let server: ServerProcess;
  let admin: string;
  let context: BrowserContext;
  let page: Page;
  const withBash: string[] = [];
  const violations: string[] = [];

  before(async () => {
    if (!existsSync(join(ROOT, "console/dist/index.html"))) {
      const b = await run("npm", ["run", "build"], {
        cwd: ROOT,
        env: { ...process.env, PATH: `${ROOT}/node_modules/.bin:${process.env.PATH}` },
      });
      assert.equal(b.code, 0, b.stderr);
    }
    const dir = tempDir("berth-console-");
    const advisory = join(dir, "advisory.sqlite");
    await advisoryDb(advisory);
    const db = await sqliteDatabase();
    const t = await initFleetDb(db.url);
    admin = t.admin;
    server = await startServerProcess({ db: db.url, advisoryDb: advisory, tickMs: 300 });
    for (const [name, role] of [
      ["alice", "admin"],
      ["bob", "read-only"],
    ])
      assert.equal(
        (await api(server.url, admin, "POST", "/api/v1/users", { name, password: `${name}-console-1`, role }))
          .status,
        201,
      );
    const pool = await hostPool();
    const r = rng(123);
    const nodes = Array.from({ length: 30 }, (_, i) => {
      const s = simulatedSnapshot(r, i, {
        pool,
        minPackages: 60,
        maxPackages: 120,
        containers: 3,
        codename: "bookworm",
      });
      // Half the nodes run bash, half do not.
      const bash = pool.find((p) => p.name === "bash")!;
      const packages = s.packages.filter((p) => p.name !== "bash");
      if (i % 2 === 0) packages.push(bash);
      return new SimulatedNode({ ...s, packages });
    });
    await mapLimit(nodes, 6, async (n, i) => {
      await n.enroll(server.url, t.enroll);
      await n.checkIn();
      if (i % 2 === 0) withBash.push(n.nodeId);
    });
    mkdirSync(SHOTS, { recursive: true });
    context = await chromium.launchPersistentContext(tempDir("berth-chromium-"), {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    // Runs in the page (a string: this file is type-checked without the DOM library).
    await page.addInitScript({
      content: `document.addEventListener("securitypolicyviolation", (e) => {
        (window.__csp ??= []).push(e.violatedDirective + " " + e.blockedURI);
      });`,
    });
  });
  after(async () => {
    await context?.close();
    await server?.kill();
  });

  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  test("signs in, filters to the hosts a CVE affects, opens one, starts a rollout and pauses it", async () => {
    const res = await page.goto(server.url);
    assert.equal(res?.status(), 200);
    const csp = res?.headers()["content-security-policy"] ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

    // Sign in with the keyboard: the name field has the focus.
    await page.getByLabel("Name").waitFor();
    await page.keyboard.type("alice");
    await page.keyboard.press("Tab");
    await page.keyboard.type("alice-console-1");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Hosts" }).waitFor();
    await page.getByText("30 hosts").waitFor();
    await shot("1-hosts");

    await page.getByLabel("Vulnerable to").fill(CVE);
    await page.getByLabel("Vulnerable to").press("Enter");
    await page.getByText(`${withBash.length} hosts`).waitFor();
    const rows = await page.locator("tbody tr").count();
    assert.equal(rows, withBash.length);
    await shot("2-vulnerable-to-cve");

    // Open the first host from the keyboard.
    const link = page.locator("tbody tr a").first();
    const hostname = (await link.textContent())!;
    await link.focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: hostname }).waitFor();
    await page.getByRole("link", { name: CVE }).first().waitFor();
    assert.match(page.url(), /#\/hosts\/[0-9a-f-]{36}$/);
    await shot("3-host");

    await page.getByRole("link", { name: "Rollouts" }).click();
    await page.getByRole("heading", { name: "Rollouts" }).waitFor();
    const form = page.getByRole("form", { name: "New rollout" });
    await form.getByLabel("Name").fill("bash-fix");
    await form.getByLabel("Release").fill("2026.12.1");
    await form.getByLabel("Waves (% of the fleet, @+delay)").fill("50 100@+1d");
    await form.getByLabel("At once").fill("1");
    await form.getByLabel("Only hosts vulnerable to").fill(CVE);
    await form.getByRole("button", { name: "Start rollout" }).click();
    await page.getByRole("button", { name: "Pause bash-fix" }).waitFor();
    await shot("4-rollout-running");
    await page.getByRole("button", { name: "Pause bash-fix" }).click();
    await page.getByRole("button", { name: "Resume bash-fix" }).waitFor();
    await shot("5-rollout-paused");

    const list = (await api<{ rollouts: Rollout[] }>(server.url, admin, "GET", "/api/v1/rollouts")).body
      .rollouts;
    assert.equal(list.length, 1);
    const ro = list[0]!;
    assert.equal(ro.name, "bash-fix");
    assert.equal(ro.state, "paused");
    assert.equal(ro.progress.targets, withBash.length, "the selector is the CVE");
    assert.equal(ro.waves.length, 2);
    assert.equal(ro.waves[0]!.percent, 50);
    assert.equal(ro.waves[1]!.percent, 100);
    // The second wave starts in a day: only half of the affected hosts are reached now.
    assert.ok(Date.parse(ro.waves[1]!.startAt!) > Date.now() + 23 * 3_600_000);
    assert.equal(ro.progress.reached, Math.ceil(withBash.length / 2));
    assert.ok(ro.progress.queued + ro.progress.running <= 1);
    const audit = await api<{ entries: { action: string; actor: string }[] }>(
      server.url,
      admin,
      "GET",
      "/api/v1/audit",
    );
    assert.ok(audit.body.entries.some((e) => e.action === "rollout.pause" && e.actor === "alice"));
  });

  test("the charts render, every control is reachable with Tab, and nothing broke the CSP", async () => {
    await page.goto(`${server.url}/#/vulnerabilities`);
    await page.getByRole("heading", { name: "Vulnerabilities" }).waitFor();
    await page.locator(".chart canvas").first().waitFor();
    await page.getByRole("link", { name: CVE }).waitFor();
    await shot("6-vulnerabilities");
    await page.goto(`${server.url}/#/hardening`);
    await page.locator(".chart canvas").first().waitFor();
    await shot("7-hardening");
    // Tab from the top of the page: focus moves through links, buttons and fields only.
    await page.goto(`${server.url}/#/hosts`);
    await page.getByRole("heading", { name: "Hosts" }).waitFor();
    const seen: string[] = [];
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press("Tab");
      seen.push(await page.evaluate<string>('document.activeElement ? document.activeElement.tagName : ""'));
    }
    assert.ok(
      seen.every((t) => ["A", "BUTTON", "INPUT", "SELECT"].includes(t)),
      seen.join(" "),
    );
    assert.ok(seen.includes("A") && seen.includes("INPUT"));
    const fromPage = await page.evaluate<string[]>("window.__csp || []");
    assert.deepEqual([...violations, ...fromPage], []);
  });

  test("a read-only user sees the fleet but no controls that change it; signed out, nothing", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Name").fill("bob");
    await page.getByLabel("Password").fill("bob-console-1");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("bob (read-only)").waitFor();
    await page.goto(`${server.url}/#/rollouts`);
    await page.getByRole("heading", { name: "Rollouts" }).waitFor();
    await page.getByText("bash-fix").waitFor();
    assert.equal(await page.getByRole("form", { name: "New rollout" }).count(), 0);
    assert.equal(await page.getByRole("button", { name: /Resume|Pause/ }).count(), 0);
    await shot("8-read-only");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Name").waitFor();
    const status = await page.evaluate<number>('fetch("/api/v1/nodes").then((r) => r.status)');
    assert.equal(status, 401);
  });
});
