// Live shared-library upgrade. For one process: check the new library's ABI against the mapped one
// (every exported function present, same symbol version), make it visible in the process's root, have
// the process dlopen it (through the ptrace helper), then — with every thread stopped and none of them
// executing or about to return into the bytes — write a jump at the entry of every old function (and
// of any earlier replacement), optionally rewriting GOT entries too. Every write's old bytes go into a
// per-process journal first, so rollback can put them back, one layer at a time.

import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  rmSync,
} from "node:fs";
import { basename, join } from "node:path";
import { BerthError } from "../cli/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import {
  type ElfFile,
  exportedFunctions,
  loadBias,
  parseElf,
  R_X86_64_GLOB_DAT,
  R_X86_64_JUMP_SLOT,
} from "./elf.ts";
import type { PtraceHelper } from "./helper.ts";
import {
  commandName,
  hex,
  inOtherRoot,
  libraryMappings,
  type Mapping,
  mappedFile,
  readMaps,
  startTime,
} from "./proc.ts";

export function patchStateDir(): string {
  return process.env.BERTH_PATCH_STATE || "/var/lib/berth/patch";
}

const RTLD_NOW = 2n;

export interface PatchWrite {
  addr: string;
  before: string;
  after: string;
  what: string;
}

export interface PatchLayer {
  lib: string;
  /** The new library as the process sees it. */
  loadedAs: string;
  sha256: string;
  functions: number;
  writes: PatchWrite[];
  at: string;
}

export interface ProcessJournal {
  pid: number;
  startTime: string;
  comm: string;
  layers: PatchLayer[];
}

function journalPath(pid: number, dir: string) {
  return join(dir, "processes", `${pid}.json`);
}

/** The process's journal, or an empty one (a journal of an earlier process with the same PID is stale). */
export function readProcessJournal(pid: number, dir = patchStateDir()): ProcessJournal {
  const st = startTime(pid);
  const p = journalPath(pid, dir);
  if (existsSync(p)) {
    const j = JSON.parse(readFileSync(p, "utf8")) as ProcessJournal;
    if (j.startTime === st) return j;
  }
  return { pid, startTime: st, comm: commandName(pid), layers: [] };
}

async function writeProcessJournal(j: ProcessJournal, dir: string): Promise<void> {
  const p = journalPath(j.pid, dir);
  if (j.layers.length) await writeFileAtomic(p, `${JSON.stringify(j, null, 2)}\n`);
  else rmSync(p, { force: true });
}

/** The shortest jump from `from` to `to` that fits in `room` bytes, or undefined. */
export function encodeJump(from: bigint, to: bigint, room: number): Buffer | undefined {
  const rel = to - (from + 5n);
  if (room >= 5 && rel >= -(2n ** 31n) && rel < 2n ** 31n) {
    const b = Buffer.alloc(5);
    b[0] = 0xe9; // jmp rel32
    b.writeInt32LE(Number(rel), 1);
    return b;
  }
  if (room >= 14) {
    const b = Buffer.alloc(14);
    b.set([0xff, 0x25, 0, 0, 0, 0]); // jmp [rip+0]
    b.writeBigUInt64LE(to, 6);
    return b;
  }
  return undefined;
}

export interface AbiProblem {
  symbol: string;
  problem: string;
}

/** What would break if calls to `old` went to `neu`: missing functions, other versions, ifuncs, tiny functions. */
export function abiProblems(old: ElfFile, neu: ElfFile): AbiProblem[] {
  const out: AbiProblem[] = [];
  const newFns = new Map(exportedFunctions(neu).map((s) => [s.name, s]));
  for (const f of exportedFunctions(old)) {
    const n = newFns.get(f.name);
    if (!n) out.push({ symbol: f.name, problem: "missing from the new library" });
    else if ((f.version ?? "") !== (n.version ?? ""))
      out.push({
        symbol: f.name,
        problem: `version ${f.version ?? "(none)"} in the old library, ${n.version ?? "(none)"} in the new`,
      });
    else if (f.type === "ifunc" || n.type === "ifunc")
      out.push({ symbol: f.name, problem: "an IFUNC (its entry is a resolver), not patchable" });
    else if (f.size < 5)
      out.push({ symbol: f.name, problem: `too small for a jump (${f.size} bytes, 5 needed)` });
  }
  return out;
}

interface Loaded {
  mapping: Mapping;
  elf: ElfFile;
  bias: bigint;
}

function loaded(pid: number, maps: Mapping[], path: string): Loaded | undefined {
  const m = libraryMappings(maps, path)[0];
  if (!m) return undefined;
  const elf = parseElf(mappedFile(pid, m));
  return { mapping: m, elf, bias: loadBias(m.start, elf) };
}

/** Copies the new library where the process can open it: its own root for a container. */
async function stage(pid: number, newPath: string, bytes: Buffer, sha: string, dir: string): Promise<string> {
  const name = `${sha.slice(0, 16)}-${basename(newPath)}`;
  const inside = inOtherRoot(pid) ? `/tmp/berth-patch/${name}` : undefined;
  const real = inside ? `/proc/${pid}/root${inside}` : join(dir, "libs", name);
  if (!existsSync(real)) await writeFileAtomic(real, bytes);
  return inside ?? realpathSync(real);
}

export interface PatchResult {
  pid: number;
  comm: string;
  functions: number;
  writes: number;
  pauseNs: number;
  retries: number;
}

export interface PatchOptions {
  lib: string;
  newPath: string;
  got?: boolean;
  stateDir?: string;
  /** Attempts when a thread sits in the bytes to change. */
  retries?: number;
}

const DEFAULT_RETRIES = 50;

interface Planned {
  addr: bigint;
  bytes: Buffer;
  what: string;
  /** Write only when the current bytes pass this (GOT slots). */
  onlyIf?: (before: Buffer) => boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Current bytes of the process's memory, read without stopping it (root reads /proc/PID/mem). */
function readMem(pid: number, addr: bigint, len: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    const buf = Buffer.alloc(len);
    if (readSync(fd, buf, 0, len, addr) !== len)
      throw new BerthError(`cannot read process ${pid} at ${hex(addr)}`);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs the helper's one-shot critical section (stop, check threads, verify old bytes, write, resume),
 * retrying with jittered backoff while a thread is about to return into the bytes.
 */
async function swapSafely(
  h: PtraceHelper,
  pid: number,
  writes: { addr: bigint; old: Buffer; data: Buffer; what: string }[],
  retries: number,
): Promise<{ pauseNs: number; retries: number }> {
  const ranges = writes.map((w): [bigint, bigint] => [w.addr, w.addr + BigInt(w.data.length)]);
  for (let attempt = 0; ; attempt++) {
    const r = await h.swap(pid, ranges, writes);
    if (r.pauseNs !== undefined) return { pauseNs: r.pauseNs, retries: attempt };
    if (r.mismatch) {
      const w = writes.find((x) => x.addr === BigInt(r.mismatch!));
      throw new BerthError(
        `${w?.what ?? r.mismatch} in process ${pid} changed under Berth's feet; nothing was written`,
      );
    }
    if (attempt >= retries)
      throw new BerthError(`process ${pid} keeps a thread in the code to patch (${r.busy}); try again later`);
    // Backoff with jitter, so a thread in a periodic loop is not met at the same point every time.
    await sleep(Math.min(2 ** attempt, 50) * (0.5 + Math.random()));
  }
}

export async function patchLib(h: PtraceHelper, pid: number, o: PatchOptions): Promise<PatchResult> {
  const dir = o.stateDir ?? patchStateDir();
  const newBytes = readFileSync(o.newPath);
  const neu = parseElf(newBytes);
  const sha = createHash("sha256").update(newBytes).digest("hex");
  const journal = readProcessJournal(pid, dir);
  const maps = readMaps(pid);
  const old = libraryMappings(maps, o.lib).filter(
    (m) => !m.path.includes("/berth-patch/") && !m.path.includes("/patch/libs/"),
  )[0];
  if (!old) throw new BerthError(`process ${pid} does not map ${o.lib}`);
  const oldElf = parseElf(mappedFile(pid, old));
  const problems = abiProblems(oldElf, neu);
  if (problems.length)
    throw new BerthError(
      `refusing ${o.newPath} for ${old.path}: ${problems
        .slice(0, 5)
        .map((p) => `${p.symbol} ${p.problem}`)
        .join("; ")}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ""}`,
    );
  const libc = maps.find((m) => m.offset === 0n && /\/libc\.so\.6$|\/libc-[\d.]+\.so$/.test(m.path));
  if (!libc)
    throw new BerthError(`process ${pid} does not use glibc's libc.so.6; cannot load a library into it`);
  const libcElf = parseElf(mappedFile(pid, libc));
  const dlopen =
    exportedFunctions(libcElf).find((s) => s.name === "dlopen") ??
    libcElf.symbols.find((s) => s.name === "__libc_dlopen_mode" && s.defined);
  if (!dlopen) throw new BerthError(`process ${pid}'s libc has no dlopen`);
  const dlopenAddr = loadBias(libc.start, libcElf) + dlopen.value;
  const loadedAs = await stage(pid, o.newPath, newBytes, sha, dir);

  let pauseNs = 0;
  // Loading the library is its own short stop; skipped when an earlier patch already loaded it.
  if (!libraryMappings(maps, loadedAs).length) {
    await h.attach(pid).catch((e: Error) => {
      throw new BerthError(`cannot attach to process ${pid}: ${e.message}`);
    });
    try {
      const handle = await h.call(dlopenAddr, RTLD_NOW, loadedAs);
      if (handle === 0n) throw new BerthError(`dlopen("${loadedAs}") failed inside process ${pid}`);
    } finally {
      pauseNs += await h.detach().catch(() => 0);
    }
  }
  // Fault injection for the tests: the target dies between loading the library and the writes.
  if (process.env.BERTH_PATCH_KILL_TARGET === "1") process.kill(pid, "SIGKILL");
  if (!existsSync(`/proc/${pid}`))
    throw new BerthError(`process ${pid} exited during the patch; nothing was written`);
  const now = readMaps(pid);
  const target = loaded(pid, now, loadedAs);
  if (!target) throw new BerthError(`process ${pid} exited or did not load ${loadedAs}`);
  const newFns = new Map(exportedFunctions(target.elf).map((s) => [s.name, target.bias + s.value]));
  // Entries to redirect: the original library's, and those of each earlier replacement still loaded.
  const sources: { bias: bigint; elf: ElfFile; label: string }[] = [
    { bias: loadBias(old.start, oldElf), elf: oldElf, label: basename(old.path) },
  ];
  for (const layer of journal.layers) {
    const prev = loaded(pid, now, layer.loadedAs);
    if (prev && layer.loadedAs !== loadedAs)
      sources.push({ bias: prev.bias, elf: prev.elf, label: basename(layer.loadedAs) });
  }
  const planned: Planned[] = [];
  for (const s of sources)
    for (const f of exportedFunctions(s.elf)) {
      const to = newFns.get(f.name);
      if (to === undefined) continue;
      const from = s.bias + f.value;
      const jump = encodeJump(from, to, f.size);
      if (!jump)
        throw new BerthError(
          `${f.name} (${f.size} bytes) is too small for a jump this far; nothing was written`,
        );
      planned.push({ addr: from, bytes: jump, what: `${s.label}:${f.name}` });
    }
  if (o.got) planned.push(...(await gotWrites(pid, now, sources, newFns)));

  const writes: PatchWrite[] = [];
  const chosen: { addr: bigint; old: Buffer; data: Buffer; what: string }[] = [];
  for (const p of planned) {
    const before = readMem(pid, p.addr, p.bytes.length);
    if (p.onlyIf && !p.onlyIf(before)) continue;
    chosen.push({ addr: p.addr, old: before, data: p.bytes, what: p.what });
    writes.push({
      addr: hex(p.addr),
      before: before.toString("hex"),
      after: p.bytes.toString("hex"),
      what: p.what,
    });
  }
  // Journal first, outside the stop: if Berth dies after the write, rollback knows every byte.
  journal.layers.push({
    lib: old.path,
    loadedAs,
    sha256: sha,
    functions: exportedFunctions(oldElf).length,
    writes,
    at: new Date().toISOString(),
  });
  await writeProcessJournal(journal, dir);
  let retries = 0;
  try {
    const r = await swapSafely(h, pid, chosen, o.retries ?? DEFAULT_RETRIES);
    pauseNs += r.pauseNs;
    retries = r.retries;
  } catch (e) {
    journal.layers.pop();
    await writeProcessJournal(journal, dir);
    throw e;
  }
  return { pid, comm: journal.comm, functions: newFns.size, writes: writes.length, pauseNs, retries };
}

/** GOT slots anywhere in the process that hold an old function's address (or its unresolved PLT stub). */
async function gotWrites(
  pid: number,
  maps: Mapping[],
  sources: { bias: bigint; elf: ElfFile }[],
  newFns: Map<string, bigint>,
): Promise<Planned[]> {
  const oldAddrs = new Map<bigint, string>();
  for (const s of sources) for (const f of exportedFunctions(s.elf)) oldAddrs.set(s.bias + f.value, f.name);
  const out: Planned[] = [];
  for (const m of maps.filter((x) => x.offset === 0n && x.path.startsWith("/"))) {
    let elf: ElfFile;
    try {
      elf = parseElf(mappedFile(pid, m));
    } catch {
      continue;
    }
    const bias = loadBias(m.start, elf);
    for (const r of elf.relocations) {
      if ((r.type !== R_X86_64_JUMP_SLOT && r.type !== R_X86_64_GLOB_DAT) || !r.symbol) continue;
      const to = newFns.get(r.symbol);
      if (to === undefined) continue;
      const slot = bias + r.offset;
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(to);
      const own = maps.filter((x) => x.path === m.path);
      // Only slots bound to the old function, or still at the module's own lazy PLT stub.
      const onlyIf = (before: Buffer) => {
        const v = before.readBigUInt64LE(0);
        return oldAddrs.has(v) || own.some((x) => v >= x.start && v < x.end);
      };
      out.push({ addr: slot, bytes: b, what: `GOT ${basename(m.path)}:${r.symbol}`, onlyIf });
    }
  }
  return out;
}

/** Takes back the newest layer of patches in one process, after checking nothing else changed those bytes. */
export async function rollbackLib(
  h: PtraceHelper,
  pid: number,
  o: { stateDir?: string; retries?: number } = {},
): Promise<PatchResult> {
  const dir = o.stateDir ?? patchStateDir();
  const journal = readProcessJournal(pid, dir);
  const layer = journal.layers.at(-1);
  if (!layer) throw new BerthError(`process ${pid} has no library patches to roll back`);
  // The helper checks every address still holds exactly what Berth wrote before it restores anything.
  const undo = [...layer.writes].reverse().map((w) => ({
    addr: BigInt(w.addr),
    old: Buffer.from(w.after, "hex"),
    data: Buffer.from(w.before, "hex"),
    what: w.what,
  }));
  const { pauseNs, retries } = await swapSafely(h, pid, undo, o.retries ?? DEFAULT_RETRIES).catch(
    (e: Error) => {
      throw new BerthError(
        e.message.replace(
          "changed under Berth's feet; nothing was written",
          "changed since it was patched; not rolling back",
        ),
      );
    },
  );
  journal.layers.pop();
  await writeProcessJournal(journal, dir);
  return {
    pid,
    comm: journal.comm,
    functions: layer.functions,
    writes: layer.writes.length,
    pauseNs,
    retries,
  };
}

/** Every process with patches, from the journals (stale ones — the process is gone — are removed). */
export function patchStatus(dir = patchStateDir()): ProcessJournal[] {
  const d = join(dir, "processes");
  if (!existsSync(d)) return [];
  const out: ProcessJournal[] = [];
  for (const f of readdirSync(d)) {
    const pid = Number(f.replace(/\.json$/, ""));
    if (!Number.isInteger(pid)) continue;
    try {
      const j = readProcessJournal(pid, dir);
      if (j.layers.length) out.push(j);
      else rmSync(join(d, f), { force: true });
    } catch {
      rmSync(join(d, f), { force: true });
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}
