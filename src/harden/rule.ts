// What a hardening rule is: a stable ID, why it matters, where it comes from, a check against a
// target's facts, advice, and — only where it is safe — a fix expressed as declarative changes that
// the planner turns into exact file edits and runtime steps (so a dry run can show every byte).

import type { Facts, TargetKind } from "./facts.ts";

export type RuleSeverity = "critical" | "high" | "medium" | "low" | "info";
export const RULE_SEVERITIES: RuleSeverity[] = ["critical", "high", "medium", "low", "info"];

export type Status = "pass" | "fail" | "na";

export interface CheckResult {
  status: Status;
  /** What was seen, in one line. */
  evidence?: string;
  /** Offending items (paths, containers, users), when there are several. */
  items?: string[];
}

/** A keyed line in a configuration file; the planner replaces the line with the same key or appends. */
export interface KeyedLine {
  key: string;
  line: string;
}

export type Change =
  /** Set keyed lines in a file Berth manages (created when absent). */
  | { kind: "lines"; path: string; syntax: LineSyntax; lines: KeyedLine[]; header?: string; mode?: number }
  /** Replace keyed lines only where the file already assigns the key (e.g. /etc/sysctl.conf). */
  | { kind: "replace-lines"; path: string; syntax: LineSyntax; lines: KeyedLine[] }
  /** Remove a whole-word token from lines matching a pattern (e.g. `nullok` from pam_unix). */
  | { kind: "drop-token"; path: string; linePattern: string; token: string }
  /** Merge top-level keys into a JSON object file (daemon.json). */
  | { kind: "json"; path: string; values: Record<string, unknown> }
  | { kind: "chmod"; path: string; clear: number; set?: number }
  | { kind: "chown"; path: string; uid: number; gid: number }
  /** Mask a unit (a symlink to /dev/null in /etc/systemd/system) and stop it on a live host. */
  | { kind: "mask"; unit: string }
  /** A kernel parameter set at run time (live host only; the persisted value is a "lines" change). */
  | { kind: "sysctl"; key: string; value: string }
  /** Reload a service after its configuration changed (live host only, when it runs). */
  | { kind: "reload"; unit: string; validate?: string[] };

export type LineSyntax = "sysctl" | "space" | "ini-equals" | "modprobe" | "fstab" | "limits";

export interface Rule {
  /** Stable: never reused, never renamed. */
  id: string;
  title: string;
  category: string;
  severity: RuleSeverity;
  rationale: string;
  /** "CIS Debian 12 1.1.2.2", "CIS Docker 2.2", ... */
  refs: string[];
  targets: TargetKind[];
  check: (f: Facts) => CheckResult;
  advice: string;
  /** Changes that make the check pass; absent where no fix is safe to automate. */
  fix?: (f: Facts) => Change[];
  /** Why this rule deliberately differs from the benchmark on a container host. */
  containerNote?: string;
  /** A fix another rule's fix must not be applied without (e.g. SSH lock-out). */
  guard?: (f: Facts) => string | undefined;
}

export const pass = (evidence?: string): CheckResult => ({ status: "pass", evidence });
export const fail = (evidence: string, items?: string[]): CheckResult => ({
  status: "fail",
  evidence,
  items,
});
export const na = (evidence: string): CheckResult => ({ status: "na", evidence });

export const HOST_TARGETS: TargetKind[] = ["host", "root"];
export const FILE_TARGETS: TargetKind[] = ["host", "root", "image"];
