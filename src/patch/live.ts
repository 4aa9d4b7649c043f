// Live library upgrades in one process. The plan compares the library the process maps with the new
// build (recipe.ts, cached by both files' hashes); apply maps the new build's file read-only beside the
// old library, writes the changed functions there relocated to the old library's functions and state,
// records every byte it will change in the process's journal, and then — with every thread stopped and
// none inside a function being replaced — writes the redirects. Rollback undoes the newest layer the
// same way and unmaps its memory. A second update is applied against the original library too, so v1 ->
// v2 -> v3 and back keeps working on the process's one set of state.

import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, realpathSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { cacheRoot } from "../common/cache.ts";
import { BerthError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import { type LabeledRange, whenNoThreadInside } from "./consistency.ts";
import { cfiIndex } from "./eh-frame.ts";
import { loadBias, parseElf } from "./elf.ts";
import type { PtraceHelper } from "./helper.ts";
import {
  encodeJump,
  encodeShortJump,
  type ImageLayout,
  imageSize,
  imageWrites,
  placeImage,
  unmapRanges,
} from "./image.ts";
import { findSyscallInstruction, mapImage, unmap } from "./inject.ts";
import {
  type PatchLayer,
  type PatchWrite,
  patchStateDir,
  readProcessJournal,
  writeProcessJournal,
} from "./journal.ts";
import { loadLibrary } from "./library.ts";
import { hex, inOtherRoot, libraryMappings, type Mapping, mappedFile, readMaps, readMemory } from "./proc.ts";
import { buildRecipe, type PatchRecipe, RECIPE_VERSION, type Redirect } from "./recipe.ts";
import { jumpSlotsFor, loadedModules, resolveSymbol } from "./symbols.ts";
import { ProcessUnwinder } from "./unwind.ts";

export interface ApplyOptions {
  /** The mapped library (name, prefix or path); by default the new build's soname. */
  lib?: string;
  newPath: string;
  stateDir?: string;
  /** Attempts at the critical section while a thread is inside the code to switch. */
  attempts?: number;
}

export interface PatchResult {
  pid: number;
  comm: string;
  lib: string;
  /** Functions copied into the process, old functions redirected, functions left alone. */
  functions: number;
  redirected: number;
  identical: number;
  writes: number;
  /** Stop-to-continue of every stop this operation made (map, switch, unmap). */
  pauseNs: number;
  stops: number[];
  retries: number;
  /** Set when there was nothing to do (the new build's code is the old build's). */
  note?: string;
}

const DEFAULT_ATTEMPTS = 40;

/** Mappings of patch images and staged files: never taken for the library itself. */
export const isStaged = (path: string) =>
  path.includes("/berth-patch/") || /\/libs\/[0-9a-f]{16}-[^/]+$/.test(path);

function isElfFile(path: string): boolean {
  try {
    return readFileSync(path)
      .subarray(0, 4)
      .equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } catch {
    return false;
  }
}

/** The name to look the old library up by: --lib, else the new build's soname, else its file name. */
export function libraryName(newBytes: Buffer, newPath: string, lib?: string): string {
  if (lib) return lib;
  try {
    return parseElf(newBytes).soname ?? basename(newPath);
  } catch (e) {
    throw new BerthError(`${newPath}: ${(e as Error).message}`);
  }
}

function oldMapping(pid: number, maps: Mapping[], lib: string): Mapping {
  const m = libraryMappings(maps, lib).filter((x) => !isStaged(x.path))[0];
  if (!m) throw new BerthError(`process ${pid} does not map ${lib}`);
  return m;
}

// ---- recipes, cached in memory and on disk by the two files' hashes ----

const recipes = new Map<string, PatchRecipe>();
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export function recipeCacheDir(): string {
  return join(cacheRoot(), "patch", "recipes");
}

export async function recipeFor(
  oldPath: string,
  oldBytes: Buffer,
  newPath: string,
  newBytes: Buffer,
): Promise<PatchRecipe> {
  const key = `${sha(oldBytes)}-${sha(newBytes)}`;
  const hit = recipes.get(key);
  if (hit) return hit;
  const file = join(recipeCacheDir(), `${key}.json`);
  if (existsSync(file)) {
    try {
      const r = JSON.parse(await readFile(file, "utf8")) as PatchRecipe;
      if (r.version === RECIPE_VERSION) {
        recipes.set(key, r);
        return r;
      }
    } catch {}
  }
  const old = loadLibrary(oldPath, oldBytes);
  const neu = loadLibrary(newPath, newBytes);
  let r: PatchRecipe;
  try {
    r = buildRecipe(old, neu);
  } finally {
    old.code.free();
    neu.code.free();
  }
  recipes.set(key, r);
  try {
    await writeFileAtomic(file, JSON.stringify(r));
  } catch {
    // A read-only cache only costs the next run the analysis.
  }
  return r;
}

// ---- planning ----

export interface ProcessPlan {
  pid: number;
  comm: string;
  lib: string;
  newPath: string;
  state: "ready" | "refused" | "identical" | "already";
  compared: number;
  identical: number;
  lineNumbersOnly: number;
  copied: number;
  added: number;
  redirected: { name: string; method: string; why?: string }[];
  refusals: string[];
  analysisMs: number;
}

const methodName = (r: Redirect) =>
  r.method.kind === "padding"
    ? "short jump into padding + jump"
    : r.method.kind === "got"
      ? "GOT entries of the callers"
      : r.method.kind === "unreached"
        ? "none needed (reached only from the patch)"
        : "jump at entry";

export function refusalLine(recipe: PatchRecipe): string {
  const lines = recipe.refusals.map((r) => (r.where ? `${r.where} ${r.reason}` : r.reason));
  return `${lines.slice(0, 3).join("; ")}${lines.length > 3 ? ` (+${lines.length - 3} more)` : ""}`;
}

export async function planProcess(
  pid: number,
  newPath: string,
  o: { lib?: string; stateDir?: string } = {},
): Promise<ProcessPlan> {
  const newBytes = readFileSync(newPath);
  const lib = libraryName(newBytes, newPath, o.lib);
  const maps = readMaps(pid);
  const old = oldMapping(pid, maps, lib);
  const oldBytes = mappedFile(pid, old);
  const recipe = await recipeFor(old.path, oldBytes, newPath, newBytes);
  const journal = readProcessJournal(pid, o.stateDir ?? patchStateDir());
  const top = journal.layers.filter((l) => l.lib === old.path).at(-1);
  const why = new Map(recipe.copied.map((c) => [c.start, c.why]));
  return {
    pid,
    comm: journal.comm,
    lib: old.path,
    newPath,
    state:
      top?.sha256 === recipe.newSha256
        ? "already"
        : recipe.refusals.length
          ? "refused"
          : recipe.copied.length === 0
            ? "identical"
            : "ready",
    compared: recipe.compared,
    identical: recipe.identical,
    lineNumbersOnly: recipe.lineNumbersOnly,
    copied: recipe.copied.length,
    added: recipe.added,
    redirected: recipe.redirects.map((r) => ({ name: r.name, method: methodName(r), why: why.get(r.to) })),
    refusals: recipe.refusals.map((r) => (r.where ? `${r.where} ${r.reason}` : r.reason)),
    analysisMs: recipe.analysisMs,
  };
}

// ---- applying ----

/** Copies the new build where the process can open it: its own root for a container. */
async function stage(
  pid: number,
  newPath: string,
  bytes: Buffer,
  digest: string,
  dir: string,
): Promise<string> {
  const name = `${digest.slice(0, 16)}-${basename(newPath)}`;
  const inside = inOtherRoot(pid) ? `/tmp/berth-patch/${name}` : undefined;
  const real = inside ? `/proc/${pid}/root${inside}` : join(dir, "libs", name);
  if (!existsSync(real)) await writeFileAtomic(real, bytes, 0o644);
  return inside ?? realpathSync(real);
}

/** Writes the image's contents through /proc/PID/mem while the process runs (nothing reaches them yet). */
function writeMemory(pid: number, writes: { addr: bigint; bytes: Buffer }[]): void {
  const fd = openSync(`/proc/${pid}/mem`, "r+");
  try {
    // User-space addresses stay below 2^47, exact as a double.
    for (const w of writes)
      if (writeSync(fd, w.bytes, 0, w.bytes.length, Number(w.addr)) !== w.bytes.length)
        throw new BerthError(`cannot write process ${pid}'s memory at ${hex(w.addr)}`);
  } finally {
    closeSync(fd);
  }
}

/** A staged file's path as this (host) process can open it. */
function hostPath(pid: number, loadedAs: string): string {
  return loadedAs.startsWith("/tmp/berth-patch/") ? `/proc/${pid}/root${loadedAs}` : loadedAs;
}

interface PlannedWrite {
  addr: bigint;
  data: Buffer;
  what: string;
}

/** The redirect writes for one layer, as final bytes at each address. */
function redirectWrites(
  recipe: PatchRecipe,
  oldBias: bigint,
  base: bigint,
  modules: ReturnType<typeof loadedModules>,
  libPath: string,
  pid: number,
): PlannedWrite[] {
  const out: PlannedWrite[] = [];
  for (const r of recipe.redirects) {
    const from = oldBias + BigInt(r.old.start);
    const to = base + BigInt(r.to);
    switch (r.method.kind) {
      case "jump":
        out.push({ addr: from, data: encodeJump(from, to, 5)!, what: `${r.name}: jump` });
        break;
      case "padding": {
        const slot = oldBias + BigInt(r.method.slot);
        out.push({ addr: slot, data: encodeJump(slot, to, 5)!, what: `${r.name}: jump in padding` });
        out.push({ addr: from, data: encodeShortJump(from, slot), what: `${r.name}: short jump` });
        break;
      }
      case "got": {
        const value = Buffer.alloc(8);
        value.writeBigUInt64LE(to);
        for (const slot of jumpSlotsFor(modules, r.method.symbol, libPath)) {
          const now = readMemory(pid, slot, 8).readBigUInt64LE(0);
          if (now === from) out.push({ addr: slot, data: value, what: `${r.name}: GOT entry` });
        }
        break;
      }
      case "unreached":
        break;
    }
  }
  return out;
}

export async function applyPatch(h: PtraceHelper, pid: number, o: ApplyOptions): Promise<PatchResult> {
  const dir = o.stateDir ?? patchStateDir();
  const newBytes = readFileSync(o.newPath);
  if (!isElfFile(o.newPath)) throw new BerthError(`${o.newPath} is not an ELF shared object`);
  const lib = libraryName(newBytes, o.newPath, o.lib);
  const maps = readMaps(pid);
  const old = oldMapping(pid, maps, lib);
  const oldBytes = mappedFile(pid, old);
  const recipe = await recipeFor(old.path, oldBytes, o.newPath, newBytes);
  const journal = readProcessJournal(pid, dir);
  const result = (extra: Partial<PatchResult>): PatchResult => ({
    pid,
    comm: journal.comm,
    lib: old.path,
    functions: recipe.copied.length,
    redirected: recipe.redirects.length,
    identical: recipe.identical,
    writes: 0,
    pauseNs: 0,
    stops: [],
    retries: 0,
    ...extra,
  });
  if (recipe.refusals.length)
    throw new BerthError(`refusing ${o.newPath} for ${old.path} in process ${pid}: ${refusalLine(recipe)}`);
  const current = journal.layers.filter((l) => l.lib === old.path).at(-1);
  if (current?.sha256 === recipe.newSha256) return result({ note: "already at this version" });
  if (recipe.copied.length === 0 && !current)
    return result({ note: "the new build's code is the same as the running one's" });

  const oldElf = parseElf(oldBytes);
  const oldBias = loadBias(old.start, oldElf);
  const newElf = parseElf(newBytes);
  const loadedAs = await stage(pid, o.newPath, newBytes, recipe.newSha256, dir);
  const { size, pathAt } = imageSize(recipe, loadedAs);
  let oldEnd = old.end;
  for (const m of maps) if (m.path === old.path && m.end > oldEnd) oldEnd = m.end;
  let base = placeImage(maps, old.start, oldEnd, size);
  let image: ImageLayout = { base, size, extraAt: base + BigInt(recipe.extraAt), pathAt: base + pathAt };
  const modules = loadedModules(pid, maps, isStaged);
  const symbols = new Map<string, bigint>();
  const resolvers = new Map<string, bigint>();
  for (const e of recipe.extras)
    if (e.value.kind === "symbol") {
      const v = resolveSymbol(modules, e.value.name, (a) => {
        try {
          return readMemory(pid, a, 8).readBigUInt64LE(0);
        } catch {
          return undefined;
        }
      });
      if (v === undefined)
        throw new BerthError(
          `process ${pid} has no definition of ${e.value.name}, which the new build calls`,
        );
      if (typeof v === "bigint") symbols.set(e.value.name, v);
      else resolvers.set(e.value.name, v.resolver);
    }
  const insn = findSyscallInstruction(pid, maps);

  // 1. Map the image (a short stop of its own), then fill it while the process runs: nothing reaches it yet.
  const stops: number[] = [];
  await h.stop(pid);
  try {
    for (const [name, resolver] of resolvers) symbols.set(name, await h.call(resolver));
    // The process may have mapped something there since its maps were read: place it again.
    for (let attempt = 0; ; attempt++)
      try {
        await mapImage(h, insn, image, loadedAs, newElf.segments);
        break;
      } catch (e) {
        if (attempt >= 2 || !/could not be mapped/.test((e as Error).message)) throw e;
        base = placeImage(readMaps(pid), old.start, oldEnd, size);
        image = { base, size, extraAt: base + BigInt(recipe.extraAt), pathAt: base + pathAt };
      }
  } finally {
    stops.push(await h.resume().catch(() => 0));
  }
  const unmapAll = async () => {
    if (!existsSync(`/proc/${pid}`)) return;
    await h.stop(pid).catch(() => undefined);
    try {
      await unmap(h, insn, [[base, base + size]]);
    } catch {}
    stops.push(await h.resume().catch(() => 0));
  };
  try {
    // Fault injection for the tests: the target dies after the image is mapped, before any switch.
    if (process.env.BERTH_PATCH_KILL_TARGET === "1") process.kill(pid, "SIGKILL");
    if (!existsSync(`/proc/${pid}`))
      throw new BerthError(`process ${pid} exited during the patch; nothing was switched`);
    writeMemory(pid, imageWrites(recipe, newBytes, newElf.segments, { oldBias, image, symbols }));

    // 2. What the redirects must be after this layer; addresses earlier layers wrote go back to the original.
    // The first layer that wrote an address saw the original bytes there.
    const wanted = redirectWrites(recipe, oldBias, base, modules, old.path, pid);
    const wantedAt = new Set(wanted.map((w) => w.addr));
    const sameLib = journal.layers.filter((l) => l.lib === old.path);
    for (const layer of sameLib)
      for (const w of layer.writes) {
        const addr = BigInt(w.addr);
        if (wantedAt.has(addr)) continue;
        wanted.push({ addr, data: Buffer.from(w.before, "hex"), what: `${w.what} (restored)` });
        wantedAt.add(addr);
      }
    const writes: PatchWrite[] = [];
    const chosen: { addr: bigint; old: Buffer; data: Buffer }[] = [];
    for (const w of wanted) {
      const before = readMemory(pid, w.addr, w.data.length);
      if (before.equals(w.data)) continue;
      chosen.push({ addr: w.addr, old: before, data: w.data });
      writes.push({
        addr: hex(w.addr),
        before: before.toString("hex"),
        after: w.data.toString("hex"),
        what: w.what,
      });
    }

    // 3. The stack check covers the old functions being replaced, their padding, and earlier patch code.
    const ranges: LabeledRange[] = [];
    for (const r of recipe.redirects) {
      ranges.push({ lo: oldBias + BigInt(r.old.start), hi: oldBias + BigInt(r.old.end), label: r.name });
      if (r.method.kind === "padding")
        ranges.push({
          lo: oldBias + BigInt(r.method.slot),
          hi: oldBias + BigInt(r.method.slot + 5),
          label: `${r.name} (padding)`,
        });
    }
    for (const layer of sameLib)
      for (const [a, b] of layer.image.code)
        ranges.push({ lo: BigInt(a), hi: BigInt(b), label: `patched code of ${basename(layer.lib)}` });

    const keep = recipe.keepPages.map((p) => hex(base + BigInt(p)));
    const layer: PatchLayer = {
      lib: old.path,
      loadedAs,
      sha256: recipe.newSha256,
      functions: recipe.copied.length,
      redirected: recipe.redirects.length,
      identical: recipe.identical,
      writes,
      image: {
        base: hex(base),
        size: Number(size),
        keep,
        code: recipe.copied.map((c): [string, string] => [
          hex(base + BigInt(c.start)),
          hex(base + BigInt(c.end)),
        ]),
      },
      at: new Date().toISOString(),
    };
    // Journal first, outside the stop: if Berth dies after the switch, rollback knows every byte.
    journal.layers.push(layer);
    await writeProcessJournal(journal, dir);
    // Fault injection for the tests: Berth dies after the journal, before the switch.
    if (process.env.BERTH_PATCH_KILL_BERTH === "1") process.kill(process.pid, "SIGKILL");
    const unwinder = new ProcessUnwinder(pid, readMaps(pid), imageCfi(base, newBytes, newElf, size));
    try {
      const r = await whenNoThreadInside(
        h,
        pid,
        unwinder,
        ranges,
        async () => {
          const r = await h.commit(chosen);
          if (r.mismatch !== undefined)
            throw new BerthError(
              `${hex(r.mismatch)} in process ${pid} changed under Berth's feet; nothing was switched`,
            );
          return r.pauseNs;
        },
        o.attempts ?? DEFAULT_ATTEMPTS,
      );
      const mapStop = stops[0] ?? 0;
      stops.push(...r.stops);
      // The pause: the stop that mapped the image and the stop that switched (failed attempts are in `stops`).
      return result({ writes: writes.length, pauseNs: mapStop + r.pauseNs, stops, retries: r.retries });
    } catch (e) {
      journal.layers.pop();
      await writeProcessJournal(journal, dir);
      throw e;
    }
  } catch (e) {
    await unmapAll();
    throw e;
  }
}

/** The new build's CFI placed at the image base, so stacks through patched code unwind too. */
function imageCfi(base: bigint, newBytes: Buffer, newElf: ReturnType<typeof parseElf>, size: bigint) {
  return [
    { start: base, end: base + size, bias: base, cfi: cfiIndex(newElf, newBytes), path: "[berth patch]" },
  ];
}

/** Takes back the newest layer in one process, after checking nothing else changed those bytes. */
export async function rollbackPatch(
  h: PtraceHelper,
  pid: number,
  o: { stateDir?: string; attempts?: number } = {},
): Promise<PatchResult> {
  const dir = o.stateDir ?? patchStateDir();
  const journal = readProcessJournal(pid, dir);
  const layer = journal.layers.at(-1);
  if (!layer) throw new BerthError(`process ${pid} has no library patches to roll back`);
  const maps = readMaps(pid);
  const insn = findSyscallInstruction(pid, maps);
  const base = BigInt(layer.image.base);
  const size = BigInt(layer.image.size);
  const undo = [...layer.writes].reverse().map((w) => ({
    addr: BigInt(w.addr),
    old: Buffer.from(w.after, "hex"),
    data: Buffer.from(w.before, "hex"),
  }));
  const ranges: LabeledRange[] = layer.image.code.map(([a, b]) => ({
    lo: BigInt(a),
    hi: BigInt(b),
    label: `patched code of ${basename(layer.lib)}`,
  }));
  let newCfi: ReturnType<typeof imageCfi> = [];
  try {
    const bytes = readFileSync(hostPath(pid, layer.loadedAs));
    newCfi = imageCfi(base, bytes, parseElf(bytes), size);
  } catch {
    // Without the staged file the walk falls back to scanning those frames' stacks.
  }
  const unwinder = new ProcessUnwinder(pid, maps, newCfi);
  // A layer whose switch never happened (Berth was stopped between the journal and the switch) still
  // holds the old bytes everywhere: only its memory has to go.
  const neverSwitched = undo.every((w) => {
    try {
      return readMemory(pid, w.addr, w.data.length).equals(w.data);
    } catch {
      return false;
    }
  });
  const r = await whenNoThreadInside(
    h,
    pid,
    unwinder,
    ranges,
    async () => {
      const bad = neverSwitched ? undefined : await h.writes(undo);
      if (bad !== undefined)
        throw new BerthError(`${hex(bad)} in process ${pid} changed since it was patched; not rolling back`);
      // No thread is inside the patch and nothing leads there any more: its memory can go, except pages
      // whose addresses the patched code may have handed out (constants it introduced).
      await unmap(
        h,
        insn,
        unmapRanges(
          base,
          size,
          layer.image.keep.map((k) => BigInt(k)),
        ),
      );
    },
    o.attempts ?? DEFAULT_ATTEMPTS,
  );
  journal.layers.pop();
  await writeProcessJournal(journal, dir);
  return {
    pid,
    comm: journal.comm,
    lib: layer.lib,
    functions: layer.functions,
    redirected: layer.redirected,
    identical: layer.identical,
    writes: layer.writes.length,
    pauseNs: r.pauseNs,
    stops: r.stops,
    retries: r.retries,
  };
}
