// Streaming parser for deb822 control data: Packages, Sources, Release, dpkg status, .deb control.
// Values keep their continuation lines verbatim (leading space included), as dpkg and python-debian do,
// so multi-line fields (Description, Conffiles, SHA256 lists) can be read back exactly.

export type Stanza = Record<string, string>;

export class Deb822SyntaxError extends Error {
  readonly line: number;
  constructor(message: string, line: number, source?: string) {
    super(`${source ? `${source}: ` : ""}line ${line}: ${message}`);
    this.name = "Deb822SyntaxError";
    this.line = line;
  }
}

export interface Deb822Options {
  /** Keep only these fields (exact names); the rest are skipped without being stored. */
  fields?: ReadonlySet<string>;
  /** Name shown in error messages (a file path). */
  source?: string;
  /** Allow "#" comment lines (debian/control, sources files); on by default. */
  comments?: boolean;
}

/**
 * Incremental parser: push text as it arrives, collect the complete stanzas it returns, then call end().
 * A field name is whatever precedes the first colon; field names are case-sensitive here, use
 * fieldOf() for a case-insensitive look-up.
 */
export class Deb822Parser {
  private readonly fields?: ReadonlySet<string>;
  private readonly source?: string;
  private readonly comments: boolean;
  private carry = "";
  private lineNo = 0;
  private current: Stanza | undefined;
  private lastField: string | undefined;
  /** false when the last field is being skipped (not in `fields`), so its continuations are too. */
  private keepingLast = false;

  constructor(options: Deb822Options = {}) {
    this.fields = options.fields;
    this.source = options.source;
    this.comments = options.comments ?? true;
  }

  push(text: string, out: Stanza[] = []): Stanza[] {
    const data = this.carry ? this.carry + text : text;
    let pos = 0;
    for (;;) {
      const nl = data.indexOf("\n", pos);
      if (nl === -1) break;
      this.line(data, pos, nl, out);
      pos = nl + 1;
    }
    this.carry = pos < data.length ? data.slice(pos) : "";
    return out;
  }

  end(out: Stanza[] = []): Stanza[] {
    if (this.carry) {
      const rest = this.carry;
      this.carry = "";
      this.line(rest, 0, rest.length, out);
    }
    this.finish(out);
    return out;
  }

  private fail(message: string): never {
    throw new Deb822SyntaxError(message, this.lineNo, this.source);
  }

  private finish(out: Stanza[]): void {
    if (this.current) out.push(this.current);
    this.current = undefined;
    this.lastField = undefined;
    this.keepingLast = false;
  }

  private line(data: string, start: number, stop: number, out: Stanza[]): void {
    this.lineNo++;
    let end = stop;
    if (end > start && data.charCodeAt(end - 1) === 13) end--; // tolerate CRLF
    const first = data.charCodeAt(start);
    if (end === start || isBlankLine(data, start, end)) {
      this.finish(out);
      return;
    }
    if (first === 32 || first === 9) {
      if (!this.lastField) this.fail("continuation line outside a field");
      if (this.keepingLast && this.current) {
        const tail = trimEnd(data, start, end);
        this.current[this.lastField] += `\n${data.slice(start, tail)}`;
      }
      return;
    }
    if (first === 35 && this.comments) return; // '#'
    const colon = data.indexOf(":", start);
    if (colon === -1 || colon >= end)
      this.fail(`expected "Field: value", got "${clip(data.slice(start, end))}"`);
    if (colon === start) this.fail("empty field name");
    const name = data.slice(start, colon);
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      if (c <= 32 || c === 127) this.fail(`invalid character in field name "${clip(name)}"`);
    }
    this.current ??= {};
    this.lastField = name;
    if (this.fields && !this.fields.has(name)) {
      this.keepingLast = false;
      return;
    }
    if (Object.hasOwn(this.current, name)) this.fail(`duplicate field "${name}"`);
    let vs = colon + 1;
    while (vs < end && (data.charCodeAt(vs) === 32 || data.charCodeAt(vs) === 9)) vs++;
    this.current[name] = data.slice(vs, trimEnd(data, vs, end));
    this.keepingLast = true;
  }
}

function isBlankLine(data: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = data.charCodeAt(i);
    if (c !== 32 && c !== 9) return false;
  }
  return true;
}

function trimEnd(data: string, start: number, end: number): number {
  while (end > start && (data.charCodeAt(end - 1) === 32 || data.charCodeAt(end - 1) === 9)) end--;
  return end;
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Parses a whole text at once. */
export function parseDeb822(text: string, options?: Deb822Options): Stanza[] {
  const p = new Deb822Parser(options);
  const out = p.push(text);
  return p.end(out);
}

/** Parses a stream of text or UTF-8 bytes, yielding each stanza as soon as it is complete. */
export async function* streamDeb822(
  source: AsyncIterable<string | Uint8Array>,
  options?: Deb822Options,
): AsyncGenerator<Stanza> {
  const p = new Deb822Parser(options);
  const decoder = new TextDecoder("utf-8");
  const batch: Stanza[] = [];
  for await (const chunk of source) {
    p.push(typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true }), batch);
    for (const s of batch) yield s;
    batch.length = 0;
  }
  const tail = decoder.decode();
  if (tail) p.push(tail, batch);
  p.end(batch);
  for (const s of batch) yield s;
}

/** Case-insensitive field look-up, as deb822 field names are case-insensitive. */
export function fieldOf(stanza: Stanza, name: string): string | undefined {
  const exact = stanza[name];
  if (exact !== undefined) return exact;
  const lower = name.toLowerCase();
  for (const k of Object.keys(stanza)) if (k.toLowerCase() === lower) return stanza[k];
  return undefined;
}

/** The lines of a multi-line field after its first line, trimmed (Release hash lists, Conffiles). */
export function continuationLines(value: string | undefined): string[] {
  if (!value) return [];
  return value
    .split("\n")
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}
