// Where a process's modules define a symbol, and which of their GOT entries call one: what the dynamic
// loader decided, read back from /proc/PID/maps and the mapped files.

import { basename } from "node:path";
import { type ElfFile, loadBias, parseElf, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT } from "./elf.ts";
import { type Mapping, mappedFile } from "./proc.ts";

export interface LoadedModule {
  path: string;
  mapping: Mapping;
  elf: ElfFile;
  bias: bigint;
}

const parsed = new Map<string, ElfFile | undefined>();

/** Every ELF object the process maps, in address order (the main program usually first). */
export function loadedModules(pid: number, maps: Mapping[], skip: (path: string) => boolean): LoadedModule[] {
  const out: LoadedModule[] = [];
  const seen = new Set<string>();
  for (const m of maps) {
    if (m.offset !== 0n || !m.path.startsWith("/") || seen.has(m.path) || skip(m.path)) continue;
    seen.add(m.path);
    const key = `${m.dev}:${m.inode}`;
    let elf = parsed.get(key);
    if (!parsed.has(key)) {
      try {
        elf = parseElf(mappedFile(pid, m));
      } catch {
        elf = undefined;
      }
      parsed.set(key, elf);
    }
    if (elf) out.push({ path: m.path, mapping: m, elf, bias: loadBias(m.start, elf) });
  }
  return out;
}

/**
 * The address of "name" or "name@version" as the dynamic loader would bind it for a new reference:
 * the first module that defines it, the main program first. An IFUNC's address is what its resolver
 * chose: read from a GOT entry some module already bound (`read` reads the process's memory), or, when
 * none did, the resolver to call.
 */
export function resolveSymbol(
  modules: LoadedModule[],
  key: string,
  read: (addr: bigint) => bigint | undefined,
): bigint | { resolver: bigint } | undefined {
  const at = key.indexOf("@");
  const name = at < 0 ? key : key.slice(0, at);
  const version = at < 0 ? undefined : key.slice(at + 1);
  const ordered = [...modules].sort((a, b) => Number(a.elf.type !== 2) - Number(b.elf.type !== 2));
  for (const m of ordered) {
    const s = m.elf.symbols.find(
      (x) =>
        x.name === name &&
        x.defined &&
        x.bind !== "local" &&
        (version === undefined || x.version === version) &&
        !x.hidden,
    );
    if (!s) continue;
    if (s.type !== "ifunc") return m.bias + s.value;
    // Not bound anywhere yet: the caller runs the resolver in the process, as the loader would.
    return boundAddress(modules, name, read) ?? { resolver: m.bias + s.value };
  }
  return undefined;
}

/** A symbol's address from a GOT entry that is already bound (not pointing back into its own module). */
function boundAddress(
  modules: LoadedModule[],
  name: string,
  read: (addr: bigint) => bigint | undefined,
): bigint | undefined {
  for (const m of modules)
    for (const r of m.elf.relocations) {
      if ((r.type !== R_X86_64_JUMP_SLOT && r.type !== R_X86_64_GLOB_DAT) || r.symbol !== name) continue;
      const v = read(m.bias + r.offset);
      if (v === undefined || v === 0n) continue;
      const own = m.elf.loads.some((l) => v >= m.bias + l.vaddr && v < m.bias + l.vaddr + l.memsz);
      if (!own) return v;
    }
  return undefined;
}

/** JUMP_SLOT entries for `symbol` in every module but the library itself: how other modules call it. */
export function jumpSlotsFor(modules: LoadedModule[], symbol: string, except: string): bigint[] {
  const name = symbol.replace(/@.*$/, "");
  const out: bigint[] = [];
  for (const m of modules) {
    if (m.path === except || basename(m.path) === basename(except)) continue;
    for (const r of m.elf.relocations)
      if (r.type === R_X86_64_JUMP_SLOT && r.symbol === name) out.push(m.bias + r.offset);
  }
  return out;
}
