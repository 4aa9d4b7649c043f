// Debian version parsing and ordering, hand-written because it must match dpkg byte for byte
// (lib/dpkg/parsehelp.c parseversion() and lib/dpkg/version.c verrevcmp()); no maintained
// JavaScript library reproduces dpkg's error and warning classes exactly.

export interface DebVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** dpkg distinguishes hard errors (the version is unusable) from warnings (it still compares). */
export type VersionProblemLevel = "error" | "warning";

export class VersionSyntaxError extends Error {
  readonly level: VersionProblemLevel;
  readonly version: string;
  constructor(version: string, message: string, level: VersionProblemLevel) {
    super(`version '${version}' has bad syntax: ${message}`);
    this.name = "VersionSyntaxError";
    this.level = level;
    this.version = version;
  }
}

const INT_MAX = 2147483647;

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isAlpha = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
// c_isblank: what dpkg trims around a version.
const isBlank = (c: number): boolean => c === 32 || c === 9;
// isspace: what strtol() skips before the epoch digits.
const isSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13);

/** dpkg works on C bytes; non-ASCII input is compared as its UTF-8 bytes (latin1 code units here). */
function toBytes(s: string): string {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 127) return Buffer.from(s, "utf8").toString("latin1");
  }
  return s;
}

export interface ParseResult {
  version: DebVersion;
  /** Set when dpkg would warn but still accept the version. */
  warning?: string;
}

/**
 * Parses like dpkg's parseversion(). Throws VersionSyntaxError with level "error" for what
 * dpkg refuses outright; returns a warning for what dpkg only warns about.
 */
export function parseVersionDetailed(input: string): ParseResult {
  const s = toBytes(input);
  let start = 0;
  while (start < s.length && isBlank(s.charCodeAt(start))) start++;
  if (start === s.length) throw new VersionSyntaxError(input, "version string is empty", "error");
  let end = start;
  while (end < s.length && !isBlank(s.charCodeAt(end))) end++;
  let after = end;
  while (after < s.length && isBlank(s.charCodeAt(after))) after++;
  if (after < s.length) throw new VersionSyntaxError(input, "version string has embedded spaces", "error");

  let epoch = 0;
  let rest = start;
  const colon = s.indexOf(":", start);
  if (colon !== -1 && colon < end) {
    epoch = parseEpoch(input, s, start, colon);
    // dpkg tests the byte right after the colon, not the trimmed end: "1: " is an empty version instead.
    if (colon + 1 === s.length)
      throw new VersionSyntaxError(input, "nothing after colon in version number", "error");
    rest = colon + 1;
  }
  const body = s.slice(rest, end);
  const hyphen = body.lastIndexOf("-");
  const upstream = hyphen === -1 ? body : body.slice(0, hyphen);
  const revision = hyphen === -1 ? "" : body.slice(hyphen + 1);
  if (hyphen !== -1 && revision === "")
    throw new VersionSyntaxError(input, "revision number is empty", "error");
  if (upstream === "") throw new VersionSyntaxError(input, "version number is empty", "error");

  const version = { epoch, upstream, revision };
  const warning = versionWarning(upstream, revision);
  return warning ? { version, warning } : { version };
}

// Mirrors strtol(string, &end, 10) followed by dpkg's checks on where it stopped.
function parseEpoch(input: string, s: string, start: number, colon: number): number {
  let i = start;
  while (i < colon && isSpace(s.charCodeAt(i))) i++;
  let negative = false;
  if (s[i] === "+" || s[i] === "-") {
    negative = s[i] === "-";
    i++;
  }
  const digitsStart = i;
  while (i < s.length && isDigit(s.charCodeAt(i))) i++;
  if (i === digitsStart) throw new VersionSyntaxError(input, "epoch in version is empty", "error");
  if (i !== colon) throw new VersionSyntaxError(input, "epoch in version is not number", "error");
  const digits = s.slice(digitsStart, i).replace(/^0+(?=\d)/, "");
  // strtol saturates at LONG_MIN/LONG_MAX (64-bit); dpkg then checks the sign before the size.
  if (negative && /[1-9]/.test(digits))
    throw new VersionSyntaxError(input, "epoch in version is negative", "error");
  if (digits.length > 10 || Number(digits) > INT_MAX)
    throw new VersionSyntaxError(input, "epoch in version is too big", "error");
  return Number(digits);
}

function versionWarning(upstream: string, revision: string): string | undefined {
  if (!isDigit(upstream.charCodeAt(0))) return "version number does not start with digit";
  for (let i = 0; i < upstream.length; i++) {
    const c = upstream.charCodeAt(i);
    if (!isDigit(c) && !isAlpha(c) && ".-+~:".indexOf(upstream[i]!) === -1)
      return "invalid character in version number";
  }
  for (let i = 0; i < revision.length; i++) {
    const c = revision.charCodeAt(i);
    if (!isDigit(c) && !isAlpha(c) && ".+~".indexOf(revision[i]!) === -1)
      return "invalid character in revision number";
  }
  return undefined;
}

/** Strict parse: refuses what dpkg refuses and what it only warns about (as dpkg does in control files). */
export function parseVersion(input: string): DebVersion {
  const { version, warning } = parseVersionDetailed(input);
  if (warning) throw new VersionSyntaxError(input, warning, "warning");
  return version;
}

export function isValidVersion(input: string): boolean {
  try {
    parseVersion(input);
    return true;
  } catch {
    return false;
  }
}

// dpkg's order(): digits sort as 0 here (they are compared numerically elsewhere), letters by
// ASCII, '~' before everything including the end of the string, other bytes after letters.
function order(c: number): number {
  if (Number.isNaN(c)) return 0;
  if (isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === 126) return -1;
  // Bytes >= 0x80 are negative signed chars in C; dpkg adds 256, which gives back the unsigned byte.
  if (c > 127) return c;
  return c + 256;
}

/** dpkg's verrevcmp() on one part (upstream or revision). */
export function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  const al = a.length;
  const bl = b.length;
  while (i < al || j < bl) {
    let firstDiff = 0;
    while ((i < al && !isDigit(a.charCodeAt(i))) || (j < bl && !isDigit(b.charCodeAt(j)))) {
      const ac = order(a.charCodeAt(i));
      const bc = order(b.charCodeAt(j));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 48) i++;
    while (b.charCodeAt(j) === 48) j++;
    while (isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a.charCodeAt(i))) return 1;
    if (isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

export function compareParsed(a: DebVersion, b: DebVersion): number {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch ? 1 : -1;
  const r = compareFragment(a.upstream, b.upstream);
  if (r) return r;
  return compareFragment(a.revision, b.revision);
}

/** dpkg's verrevcmp() on a[as, ae) and b[bs, be), without slicing (the hot path of sorting). */
function compareRange(a: string, as: number, ae: number, b: string, bs: number, be: number): number {
  let i = as;
  let j = bs;
  const code = (s: string, k: number, e: number) => (k < e ? s.charCodeAt(k) : Number.NaN);
  while (i < ae || j < be) {
    let firstDiff = 0;
    while ((i < ae && !isDigit(a.charCodeAt(i))) || (j < be && !isDigit(b.charCodeAt(j)))) {
      const ac = order(code(a, i, ae));
      const bc = order(code(b, j, be));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (i < ae && a.charCodeAt(i) === 48) i++;
    while (j < be && b.charCodeAt(j) === 48) j++;
    while (i < ae && j < be && isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < ae && isDigit(a.charCodeAt(i))) return 1;
    if (j < be && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

interface Split {
  epoch: number;
  start: number;
  hyphen: number;
  end: number;
}

/**
 * Splits a well-formed version by index (epoch, upstream [start, hyphen), revision [hyphen+1, end));
 * undefined for anything unusual (blanks, non-ASCII, odd epochs), which takes the full parser instead.
 */
function quickSplit(v: string): Split | undefined {
  const n = v.length;
  if (n === 0) return undefined;
  let start = 0;
  let epoch = 0;
  let hyphen = -1;
  for (let k = 0; k < n; k++) {
    const c = v.charCodeAt(k);
    if (c <= 32 || c > 126) return undefined;
    if (c === 58 && start === 0) {
      if (k === 0 || k > 9) return undefined;
      for (let e = 0; e < k; e++) {
        const d = v.charCodeAt(e);
        if (!isDigit(d)) return undefined;
        epoch = epoch * 10 + (d - 48);
      }
      start = k + 1;
    } else if (c === 45) hyphen = k;
  }
  if (start >= n || hyphen === start || hyphen === n - 1) return undefined;
  return { epoch, start, hyphen: hyphen === -1 ? n : hyphen, end: n };
}

/** Sign of the dpkg ordering of two version strings: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  if (a === b) return 0;
  const x = quickSplit(a);
  const y = quickSplit(b);
  let r: number;
  if (x && y) {
    if (x.epoch !== y.epoch) return x.epoch > y.epoch ? 1 : -1;
    r = compareRange(a, x.start, x.hyphen, b, y.start, y.hyphen);
    if (!r)
      r = compareRange(a, Math.min(x.hyphen + 1, x.end), x.end, b, Math.min(y.hyphen + 1, y.end), y.end);
  } else {
    // Lenient: versions dpkg only warns about still compare; hard errors throw.
    r = compareParsed(parseVersionDetailed(a).version, parseVersionDetailed(b).version);
  }
  return r < 0 ? -1 : r > 0 ? 1 : 0;
}

export function formatVersion(v: DebVersion): string {
  return `${v.epoch ? `${v.epoch}:` : ""}${v.upstream}${v.revision ? `-${v.revision}` : ""}`;
}

export type RelationOp = "<<" | "<=" | "=" | ">=" | ">>";

/** Whether `version OP bound` holds, with dpkg's operator meanings. */
export function satisfies(version: string, op: RelationOp, bound: string): boolean {
  const c = compareVersions(version, bound);
  switch (op) {
    case "<<":
      return c < 0;
    case "<=":
      return c <= 0;
    case "=":
      return c === 0;
    case ">=":
      return c >= 0;
    case ">>":
      return c > 0;
  }
}

/** The relations `dpkg --compare-versions` accepts, with how each treats an empty ("<unknown>") version. */
interface RelationRule {
  lesser: boolean;
  equal: boolean;
  greater: boolean;
  /** Result when only A is empty, when both are, when only B is. */
  noneA: boolean;
  noneBoth: boolean;
  noneB: boolean;
}

const rule = (l: number, e: number, g: number, na: number, nb2: number, nb: number): RelationRule => ({
  lesser: !!l,
  equal: !!e,
  greater: !!g,
  noneA: !!na,
  noneBoth: !!nb2,
  noneB: !!nb,
});

// Copied from dpkg's src/main/enquiry.c relationinfos[]; "-nl" forms treat an empty version as newest.
const RELATIONS: Record<string, RelationRule> = {
  le: rule(1, 1, 0, 1, 1, 0),
  lt: rule(1, 0, 0, 1, 0, 0),
  eq: rule(0, 1, 0, 0, 1, 0),
  ne: rule(1, 0, 1, 1, 0, 1),
  ge: rule(0, 1, 1, 0, 1, 1),
  gt: rule(0, 0, 1, 0, 0, 1),
  "le-nl": rule(1, 1, 0, 0, 1, 1),
  "lt-nl": rule(1, 0, 0, 0, 0, 1),
  "ge-nl": rule(0, 1, 1, 1, 1, 0),
  "gt-nl": rule(0, 0, 1, 1, 0, 0),
  "<": rule(1, 1, 0, 1, 1, 0),
  "<=": rule(1, 1, 0, 1, 1, 0),
  "<<": rule(1, 0, 0, 1, 0, 0),
  "=": rule(0, 1, 0, 0, 1, 0),
  ">": rule(0, 1, 1, 0, 1, 1),
  ">=": rule(0, 1, 1, 0, 1, 1),
  ">>": rule(0, 0, 1, 0, 0, 1),
};

export const COMPARE_OPERATORS: readonly string[] = Object.keys(RELATIONS);

export interface CompareOutcome {
  holds: boolean;
  warnings: string[];
}

/**
 * `dpkg --compare-versions A OP B`: an empty string or "<unknown>" is the empty version; versions
 * dpkg only warns about are compared anyway; hard errors throw.
 */
export function evaluateRelation(a: string, op: string, b: string): CompareOutcome {
  const r = RELATIONS[op];
  if (!r) throw new RangeError(`unknown relation '${op}' (use one of: ${COMPARE_OPERATORS.join(" ")})`);
  const warnings: string[] = [];
  const load = (v: string): DebVersion | undefined => {
    if (v === "" || v === "<unknown>") return undefined;
    const { version, warning } = parseVersionDetailed(v);
    if (warning) warnings.push(`version '${v}' has bad syntax: ${warning}`);
    return version;
  };
  const va = load(a);
  const vb = load(b);
  const informative = (v: DebVersion | undefined) =>
    !!v && (v.epoch !== 0 || v.upstream !== "" || v.revision !== "");
  let holds: boolean;
  if (!informative(va)) holds = informative(vb) ? r.noneA : r.noneBoth;
  else if (!informative(vb)) holds = r.noneB;
  else {
    const c = compareParsed(va!, vb!);
    holds = c > 0 ? r.greater : c < 0 ? r.lesser : r.equal;
  }
  return { holds, warnings };
}
