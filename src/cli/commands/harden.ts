// `berth harden`: check (score, findings, advice), apply (one-click security mode, dry run shows every
// byte), rollback (exact), runs and rules.

import { type Command, Option } from "commander";
import { BerthError, UsageError } from "../../common/errors.ts";
import { renderTable } from "../../common/format.ts";
import { writeFileAtomic } from "../../common/fsutil.ts";
import { BERTH_VERSION } from "../../common/version.ts";
import { PROFILES, type Profile, profileNamed, runRules, score } from "../../harden/engine.ts";
import { applyPlan, defaultStateDir, listRuns, rollbackRun } from "../../harden/journal.ts";
import { planFixes, renderPlan } from "../../harden/plan.ts";
import { assessmentToSarif, renderAssessment, toAssessment } from "../../harden/report.ts";
import { RULES } from "../../harden/rules/index.ts";
import { openTarget } from "../../harden/target.ts";
import { contextOf, say } from "../context.ts";
import { printJson } from "../output.ts";

interface Flags {
  target: string;
  profile: string;
  json?: boolean;
  format?: string;
  output?: string;
  failUnder?: string;
  verbose?: boolean;
  db?: string;
  dryRun?: boolean;
  force?: boolean;
  state: string;
}

function profileOf(o: Flags): Profile {
  const p = profileNamed(o.profile);
  if (!p) throw new UsageError(`unknown profile "${o.profile}" (${PROFILES.map((x) => x.name).join(", ")})`);
  return p;
}

const targetOption = () =>
  new Option("-t, --target <target>", "host, a root directory, image:NAME or container:ID").default("host");
const profileOption = () =>
  new Option("-p, --profile <name>", PROFILES.map((p) => `${p.name}: ${p.description}`).join("; ")).default(
    "security-mode",
  );

async function assess(o: Flags) {
  const profile = profileOf(o);
  const t0 = performance.now();
  const t = await openTarget(o.target, { db: o.db });
  try {
    const outcomes = runRules(t.facts, profile);
    const seconds = (performance.now() - t0) / 1000;
    const walked = t.facts.kind === "container" ? 0 : t.facts.walk().files;
    return {
      t,
      outcomes,
      assessment: toAssessment(
        t.facts.label,
        t.facts.kind,
        profile.name,
        outcomes,
        score(outcomes),
        seconds,
        walked,
      ),
    };
  } catch (e) {
    t.close();
    throw e;
  }
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0)
    throw new BerthError(
      `${what} needs root (it changes system files and keeps a journal in ${defaultStateDir()})`,
    );
}

export function registerHardenCommands(program: Command): void {
  const harden = program
    .command("harden")
    .description("assess a host, root, image or container; harden it into security mode; roll back exactly")
    .addHelpText(
      "after",
      `
Examples:
  berth harden check                              score this host, with advice
  berth harden check --target /srv/rootfs --json  an offline root: only its own files count
  berth harden check --target container:web       a running container's settings
  berth harden check --format sarif -o h.sarif --fail-under 80
  berth harden apply --dry-run                    every diff and command, nothing changed
  berth harden apply                              security mode, journaled
  berth harden rollback                           undo the last apply, byte for byte`,
    );

  harden
    .command("check")
    .description("run every rule against the target; score 0-100 weighted by severity")
    .addOption(targetOption())
    .addOption(profileOption())
    .option("--format <format>", "table, json or sarif", "table")
    .option("--json", "JSON output (same as --format json)")
    .option("-o, --output <file>", "write the report to a file")
    .option("--fail-under <score>", "exit 1 when the score is below this")
    .option("-v, --verbose", "list every offending item")
    .option("--db <path>", "advisory database for the kernel vulnerability rule")
    .action(async (o: Flags, cmd: Command) => {
      const ctx = contextOf(cmd);
      const failUnder = o.failUnder === undefined ? undefined : Number(o.failUnder);
      if (failUnder !== undefined && !(failUnder >= 0 && failUnder <= 100))
        throw new UsageError(`--fail-under wants a score from 0 to 100, not "${o.failUnder}"`);
      const format = o.json ? "json" : (o.format ?? "table");
      if (!["table", "json", "sarif"].includes(format))
        throw new UsageError(`unknown format "${format}" (table, json, sarif)`);
      const { t, assessment } = await assess(o);
      t.close();
      const text =
        format === "json"
          ? JSON.stringify(assessment, null, 2)
          : format === "sarif"
            ? JSON.stringify(assessmentToSarif(assessment, BERTH_VERSION), null, 2)
            : renderAssessment(assessment, !!o.verbose);
      if (o.output) {
        await writeFileAtomic(o.output, `${text}\n`);
        if (!ctx.quiet)
          process.stderr.write(`score ${assessment.summary.score}/100; report written to ${o.output}\n`);
      } else if (format === "table") say(ctx, text);
      else process.stdout.write(`${text}\n`);
      if (failUnder !== undefined && assessment.summary.score < failUnder) {
        process.stderr.write(`berth: score ${assessment.summary.score} is under ${failUnder}\n`);
        process.exitCode = 1;
      }
    });

  harden
    .command("apply")
    .description("apply every safe fix of the profile through a journal (see rollback)")
    .addOption(targetOption())
    .addOption(profileOption())
    .option("-n, --dry-run", "show every file diff and command; change nothing")
    .option("--json", "JSON output")
    .option("--db <path>", "advisory database for the kernel vulnerability rule")
    .addOption(new Option("--state <dir>", "where journals are kept").default(defaultStateDir()))
    .action(async (o: Flags, cmd: Command) => {
      const ctx = contextOf(cmd);
      const profile = profileOf(o);
      if (o.target.startsWith("image:") || o.target.startsWith("container:"))
        throw new UsageError(
          "images and containers are hardened by rebuilding or re-creating them; check shows the flags to use",
        );
      if (!o.dryRun) requireRoot("berth harden apply");
      const { t, outcomes, assessment } = await assess(o);
      try {
        const f = t.facts;
        if (f.readOnlyImage)
          throw new UsageError(
            `${o.target} is a built image; harden the profile's root and rebuild, or apply to a running node`,
          );
        const { plan, refused } = planFixes(f, outcomes, profile);
        const nothing = plan.edits.length === 0 && plan.steps.length === 0;
        let run: string | undefined;
        if (!o.dryRun && !nothing)
          run = applyPlan(
            plan,
            { target: f.label, kind: f.kind, root: f.root, profile: profile.name, live: f.live },
            o.state,
          );
        let after: number | undefined;
        if (run) {
          const again = await openTarget(o.target, { db: o.db });
          after = score(runRules(again.facts, profile)).score;
          again.close();
        }
        if (o.json) {
          printJson({
            target: f.label,
            profile: profile.name,
            dryRun: !!o.dryRun,
            run,
            scoreBefore: assessment.summary.score,
            scoreAfter: after,
            files: plan.edits.map((e) => ({ path: e.path, rules: e.rules, created: !e.before.exists })),
            steps: plan.steps,
            refused,
            diff: renderPlan(plan),
          });
          return;
        }
        if (o.dryRun) say(ctx, nothing ? "nothing to change" : renderPlan(plan));
        for (const r of refused) say(ctx, `refused ${r.id}: ${r.reason}`);
        if (o.dryRun) return;
        if (nothing) say(ctx, `nothing to change (score ${assessment.summary.score}/100)`);
        else
          say(
            ctx,
            `run ${run}: ${plan.edits.length} files and ${plan.steps.length} run-time steps changed; score ${assessment.summary.score} -> ${after}/100. Undo with: berth harden rollback ${run}`,
          );
        const pending = plan.edits.some(
          (e) => e.path === "/etc/fstab" || e.path.includes("/modprobe.d/") || e.path.includes("tmp.mount"),
        );
        if (pending && f.live) say(ctx, "mount and module changes take effect at the next boot");
        if (plan.edits.some((e) => e.path === "/etc/docker/daemon.json") && f.live)
          say(
            ctx,
            "Docker daemon settings take effect when dockerd restarts (live-restore keeps containers running)",
          );
      } finally {
        t.close();
      }
    });

  harden
    .command("rollback")
    .description("restore everything a run changed, byte for byte (default: the target's last run)")
    .argument("[run]", "run ID (see berth harden runs)")
    .addOption(targetOption())
    .option("--force", "restore files even if they changed after the run")
    .option("--json", "JSON output")
    .addOption(new Option("--state <dir>", "where journals are kept").default(defaultStateDir()))
    .action(async (runId: string | undefined, o: Flags, cmd: Command) => {
      const ctx = contextOf(cmd);
      requireRoot("berth harden rollback");
      const runs = listRuns(o.state);
      let id = runId;
      if (!id) {
        const t = await openTarget(o.target);
        const root = t.facts.root;
        t.close();
        id = runs.filter((r) => r.root === root && !r.rolledBack).pop()?.id;
        if (!id) throw new BerthError(`no hardening run to roll back for ${o.target}`);
      } else if (!runs.some((r) => r.id === id)) throw new UsageError(`no run ${id} (see berth harden runs)`);
      const run = runs.find((r) => r.id === id)!;
      const r = rollbackRun(id, { force: o.force, live: run.kind === "host" }, o.state);
      if (o.json) printJson({ run: id, ...r });
      else say(ctx, `run ${id} rolled back: ${r.files} files restored, ${r.steps} run-time steps undone`);
    });

  harden
    .command("runs")
    .description("hardening runs recorded in the journal")
    .option("--json", "JSON output")
    .addOption(new Option("--state <dir>", "where journals are kept").default(defaultStateDir()))
    .action((o: Flags, cmd: Command) => {
      const runs = listRuns(o.state);
      if (o.json) return printJson(runs);
      say(
        contextOf(cmd),
        runs.length
          ? renderTable(
              ["run", "target", "profile", "files", "steps", "state"],
              runs.map((r) => [
                r.id,
                r.target,
                r.profile,
                r.files,
                r.steps,
                r.rolledBack ? "rolled back" : r.complete ? "applied" : "interrupted",
              ]),
            )
          : "no runs",
      );
    });

  harden
    .command("rules")
    .description("the rule set: IDs, severities, references, which have fixes")
    .option("--json", "JSON output")
    .action((o: { json?: boolean }, cmd: Command) => {
      const rows = RULES.map((r) => ({
        id: r.id,
        category: r.category,
        severity: r.severity,
        title: r.title,
        targets: r.targets,
        refs: r.refs,
        fix: !!r.fix,
        containerNote: r.containerNote,
      }));
      if (o.json) return printJson(rows);
      say(
        contextOf(cmd),
        renderTable(
          ["id", "severity", "fix", "title"],
          rows.map((r) => [r.id, r.severity, r.fix ? "yes" : "", r.title]),
        ),
      );
      say(
        contextOf(cmd),
        `\n${rows.length} rules, ${rows.filter((r) => r.fix).length} with an automated fix`,
      );
    });
}
