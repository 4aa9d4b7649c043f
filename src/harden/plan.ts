// From declarative changes to an exact plan: for every file, its state now and after (content, mode,
// owner, or symlink), and the run-time steps on a live host. Pure apart from reading current state, so
// the dry run shows precisely what apply will write. Edits that change nothing are dropped, which is
// what makes a second apply a no-op.

import { lstatSync, readFileSync, readlinkSync } from "node:fs";
import { createTwoFilesPatch } from "diff";
import { BerthError } from "../common/errors.ts";
import type { Profile, RuleOutcome } from "./engine.ts";
import type { Facts } from "./facts.ts";
import type { Change, KeyedLine, LineSyntax } from "./rule.ts";

export interface FileState {
  exists: boolean;
  kind?: "file" | "symlink" | "dir";
  content?: Buffer;
  link?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface FileEdit {
  /** Path inside the target. */
  path: string;
  /** Where that is on this machine. */
  real: string;
  before: FileState;
  after: FileState;
  /** The rules this edit is for. */
  rules: string[];
}

export type RuntimeStep =
  | { kind: "sysctl"; key: string; value: string; rules: string[] }
  | { kind: "stop"; unit: string; rules: string[] }
  | { kind: "reload"; unit: string; validate?: string[]; rules: string[] };

export interface Plan {
  edits: FileEdit[];
  steps: RuntimeStep[];
}

export function readState(real: string): FileState {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(real);
  } catch {
    return { exists: false };
  }
  const base = { exists: true, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  if (st.isSymbolicLink()) return { ...base, kind: "symlink", link: readlinkSync(real) };
  if (st.isDirectory()) return { ...base, kind: "dir" };
  return { ...base, kind: "file", content: readFileSync(real) };
}

const collapse = (s: string) => s.trim().replace(/\s+/g, " ");

/** Whether a non-comment line assigns `key` in the given syntax. */
export function lineHasKey(syntax: LineSyntax, line: string, key: string): boolean {
  const t = collapse(line);
  if (!t || t.startsWith("#") || t.startsWith(";")) return false;
  if (syntax === "fstab") return t.split(" ")[1] === key;
  const k = collapse(key);
  const head = t.slice(0, k.length);
  const next = t.charAt(k.length);
  const same =
    syntax === "space" || syntax === "ini-equals" ? head.toLowerCase() === k.toLowerCase() : head === k;
  return same && (next === "" || next === " " || next === "=" || next === "\t");
}

/** Sets keyed lines: every assignment of a key is replaced; missing keys are added (before any Match block). */
export function setLines(text: string, syntax: LineSyntax, lines: KeyedLine[], append = true): string {
  const out = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  for (const { key, line } of lines) {
    let found = false;
    for (let i = 0; i < out.length; i++)
      if (lineHasKey(syntax, out[i]!, key)) {
        out[i] = line;
        found = true;
      }
    if (found || !append) continue;
    const match = out.findIndex((l) => /^\s*Match\s/i.test(l));
    if (match >= 0) out.splice(match, 0, line);
    else out.push(line);
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

export function dropToken(text: string, linePattern: string, token: string): string {
  const re = new RegExp(linePattern);
  const tok = new RegExp(`\\s+${token.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?=\\s|$)`, "g");
  return text
    .split("\n")
    .map((l) => (!l.trim().startsWith("#") && re.test(l) ? l.replace(tok, "") : l))
    .join("\n");
}

export function mergeJson(text: string | undefined, values: Record<string, unknown>, path: string): string {
  let obj: Record<string, unknown> = {};
  if (text !== undefined && text.trim() !== "") {
    try {
      const v = JSON.parse(text) as unknown;
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
      obj = v as Record<string, unknown>;
    } catch (e) {
      throw new BerthError(`${path} is not a JSON object (${(e as Error).message}); fix it by hand first`);
    }
  }
  return `${JSON.stringify({ ...obj, ...values }, null, 2)}\n`;
}

const sameState = (a: FileState, b: FileState) =>
  a.exists === b.exists &&
  a.kind === b.kind &&
  a.mode === b.mode &&
  a.uid === b.uid &&
  a.gid === b.gid &&
  a.link === b.link &&
  (a.content === b.content || (!!a.content && !!b.content && a.content.equals(b.content)));

/**
 * The plan for a profile: the fixes of every failing rule the profile fixes, except those a guard
 * refuses (with its reason).
 */
export function planFixes(
  f: Facts,
  outcomes: RuleOutcome[],
  profile: Profile,
): { plan: Plan; refused: { id: string; reason: string }[] } {
  const changes: { rule: string; change: Change }[] = [];
  const refused: { id: string; reason: string }[] = [];
  for (const { rule, result } of outcomes) {
    if (result.status !== "fail" || !rule.fix || !profile.fixes(rule)) continue;
    const reason = rule.guard?.(f);
    if (reason) refused.push({ id: rule.id, reason });
    else for (const change of rule.fix(f)) changes.push({ rule: rule.id, change });
  }
  return { plan: planChanges(f, changes), refused };
}

/** Turns the fixes of failing rules into a plan against the target's current files. */
export function planChanges(f: Facts, changes: { rule: string; change: Change }[]): Plan {
  const edits = new Map<string, FileEdit>();
  const steps: RuntimeStep[] = [];
  const edit = (path: string, rule: string): FileEdit => {
    let e = edits.get(path);
    if (!e) {
      const real = f.path(path);
      const before = readState(real);
      e = { path, real, before, after: { ...before }, rules: [] };
      edits.set(path, e);
    }
    if (!e.rules.includes(rule)) e.rules.push(rule);
    return e;
  };
  const text = (e: FileEdit) => (e.after.content ? e.after.content.toString("utf8") : "");
  const setText = (e: FileEdit, t: string, mode = 0o644) => {
    if (!e.after.exists) Object.assign(e.after, { exists: true, kind: "file", mode, uid: 0, gid: 0 });
    e.after.content = Buffer.from(t);
  };
  // One step per sysctl key or unit and kind (several SSH rules ask for one reload); rules accumulate.
  const stepKey = (x: RuntimeStep) => `${x.kind} ${x.kind === "sysctl" ? x.key : x.unit}`;
  const step = (s: RuntimeStep) => {
    const same = steps.find((x) => stepKey(x) === stepKey(s));
    if (same) same.rules.push(...s.rules.filter((r) => !same.rules.includes(r)));
    else steps.push(s);
  };

  for (const { rule, change: c } of changes) {
    switch (c.kind) {
      case "lines": {
        const e = edit(c.path, rule);
        if (e.before.exists && e.before.kind !== "file")
          throw new BerthError(`${c.path} is not a regular file`);
        const start = e.after.exists ? text(e) : c.header ? `${c.header}\n` : "";
        setText(e, setLines(start, c.syntax, c.lines), c.mode);
        break;
      }
      case "replace-lines": {
        if (!f.exists(c.path)) break;
        const e = edit(c.path, rule);
        if (e.after.kind === "file") setText(e, setLines(text(e), c.syntax, c.lines, false));
        break;
      }
      case "drop-token": {
        if (!f.exists(c.path)) break;
        const e = edit(c.path, rule);
        if (e.after.kind === "file") setText(e, dropToken(text(e), c.linePattern, c.token));
        break;
      }
      case "json": {
        const e = edit(c.path, rule);
        setText(e, mergeJson(e.after.exists ? text(e) : undefined, c.values, c.path));
        break;
      }
      case "chmod": {
        const e = edit(c.path, rule);
        if (e.after.exists) e.after.mode = ((e.after.mode ?? 0) & ~c.clear) | (c.set ?? 0);
        break;
      }
      case "chown": {
        const e = edit(c.path, rule);
        if (e.after.exists) Object.assign(e.after, { uid: c.uid, gid: c.gid });
        break;
      }
      case "mask": {
        const e = edit(`/etc/systemd/system/${c.unit}`, rule);
        if (!(e.after.kind === "symlink" && e.after.link === "/dev/null")) {
          e.after = { exists: true, kind: "symlink", link: "/dev/null", mode: 0o777, uid: 0, gid: 0 };
          if (f.live && f.active(c.unit)) step({ kind: "stop", unit: c.unit, rules: [rule] });
        }
        break;
      }
      case "sysctl":
        if (f.live && f.sysctlRuntime(c.key) !== c.value)
          step({ kind: "sysctl", key: c.key, value: c.value, rules: [rule] });
        break;
      case "reload":
        if (f.live) step({ kind: "reload", unit: c.unit, validate: c.validate, rules: [rule] });
        break;
    }
  }
  const changed = [...edits.values()].filter((e) => !sameState(e.before, e.after));
  // A reload only matters when its service's configuration changed.
  const kept = steps.filter(
    (s) =>
      s.kind !== "reload" ||
      (changed.some((e) => e.rules.some((r) => s.rules.includes(r))) && f.active(s.unit)),
  );
  return { edits: changed.sort((a, b) => a.path.localeCompare(b.path)), steps: kept };
}

const modeStr = (m?: number) => (m === undefined ? "-" : m.toString(8).padStart(4, "0"));

/** The dry run: a unified diff per file, mode and owner changes, and the commands to run. */
export function renderPlan(plan: Plan): string {
  const out: string[] = [];
  for (const e of plan.edits) {
    const b = e.before;
    const a = e.after;
    if (a.kind === "symlink") {
      out.push(
        `--- ${e.path}\n+++ ${e.path}\n${b.exists ? `- ${b.kind === "symlink" ? `-> ${b.link}` : b.kind}\n` : ""}+ -> ${a.link}`,
      );
      continue;
    }
    const bt = b.content?.toString("utf8") ?? "";
    const at = a.content?.toString("utf8") ?? "";
    if (bt !== at)
      out.push(
        createTwoFilesPatch(
          b.exists ? `a${e.path}` : "/dev/null",
          `b${e.path}`,
          bt,
          at,
          undefined,
          undefined,
          { context: 3 },
        )
          .split("\n")
          .filter((l) => !/^=+$/.test(l) && !l.startsWith("Index:"))
          .join("\n")
          .trimEnd(),
      );
    if (b.exists && (b.mode !== a.mode || b.uid !== a.uid || b.gid !== a.gid))
      out.push(
        `${e.path}: mode ${modeStr(b.mode)} -> ${modeStr(a.mode)}, owner ${b.uid}:${b.gid} -> ${a.uid}:${a.gid}`,
      );
    else if (!b.exists) out.push(`${e.path}: new file, mode ${modeStr(a.mode)}, owner ${a.uid}:${a.gid}`);
  }
  for (const s of plan.steps) {
    if (s.kind === "sysctl") out.push(`$ sysctl -w ${s.key}=${s.value}`);
    if (s.kind === "stop") out.push(`$ systemctl stop ${s.unit}`);
    if (s.kind === "reload")
      out.push(`${s.validate ? `$ ${s.validate.join(" ")}\n` : ""}$ systemctl reload ${s.unit}`);
  }
  return out.join("\n");
}
