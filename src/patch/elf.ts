// A reader for the parts of ELF64 x86-64 shared objects live patching needs: dynamic symbols with their
// sizes and version names, load segments, and dynamic relocations (for GOT rewriting). Hand-written
// because no maintained npm library reads symbol versions; every offset is bounds-checked so a
// truncated or hostile file fails with one line instead of reading garbage.

import { BerthError } from "../cli/errors.ts";

export interface ElfSymbol {
  name: string;
  value: bigint;
  size: number;
  type: "func" | "ifunc" | "object" | "other";
  bind: "global" | "weak" | "local" | "other";
  defined: boolean;
  /** Version name from .gnu.version_d / _r ("GLIBC_2.34"), if any. */
  version?: string;
  /** Not the default version of the name (name@VER rather than name@@VER). */
  hidden: boolean;
}

export interface ElfRelocation {
  offset: bigint;
  type: number;
  symbol?: string;
}

export interface ElfFile {
  type: number;
  loads: { vaddr: bigint; offset: bigint; filesz: bigint; memsz: bigint; flags: number }[];
  symbols: ElfSymbol[];
  relocations: ElfRelocation[];
  soname?: string;
}

export const R_X86_64_GLOB_DAT = 6;
export const R_X86_64_JUMP_SLOT = 7;

class Reader {
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  check(off: number | bigint, len: number, what: string): number {
    const o = Number(off);
    if (!Number.isSafeInteger(o) || o < 0 || len < 0 || o + len > this.buf.length)
      throw new BerthError(`not a valid ELF file: ${what} lies outside the file`);
    return o;
  }
  u8(off: number, what: string) {
    return this.buf.readUInt8(this.check(off, 1, what));
  }
  u16(off: number, what: string) {
    return this.buf.readUInt16LE(this.check(off, 2, what));
  }
  u32(off: number, what: string) {
    return this.buf.readUInt32LE(this.check(off, 4, what));
  }
  u64(off: number, what: string) {
    return this.buf.readBigUInt64LE(this.check(off, 8, what));
  }
  cstr(off: number, what: string): string {
    const o = this.check(off, 0, what);
    const end = this.buf.indexOf(0, o);
    if (end < 0) throw new BerthError(`not a valid ELF file: unterminated string in ${what}`);
    return this.buf.toString("latin1", o, end);
  }
}

interface Section {
  name: string;
  type: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

const SHT_RELA = 4;
const SHT_DYNSYM = 11;
const SHT_GNU_VERDEF = 0x6ffffffd;
const SHT_GNU_VERNEED = 0x6ffffffe;
const SHT_GNU_VERSYM = 0x6fffffff;
const SHT_DYNAMIC = 6;

export function parseElf(buf: Buffer): ElfFile {
  const r = new Reader(buf);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new BerthError("not an ELF file");
  if (r.u8(4, "class") !== 2 || r.u8(5, "data") !== 1)
    throw new BerthError("not a 64-bit little-endian ELF file");
  if (r.u16(18, "machine") !== 62) throw new BerthError("not an x86-64 ELF file");
  const type = r.u16(16, "type");
  const phoff = Number(r.u64(32, "phoff"));
  const shoff = Number(r.u64(40, "shoff"));
  const phentsize = r.u16(54, "phentsize");
  const phnum = r.u16(56, "phnum");
  const shentsize = r.u16(58, "shentsize");
  const shnum = r.u16(60, "shnum");
  const shstrndx = r.u16(62, "shstrndx");

  const loads: ElfFile["loads"] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    r.check(p, 56, "program header");
    if (r.u32(p, "p_type") !== 1) continue;
    loads.push({
      flags: r.u32(p + 4, "p_flags"),
      offset: r.u64(p + 8, "p_offset"),
      vaddr: r.u64(p + 16, "p_vaddr"),
      filesz: r.u64(p + 32, "p_filesz"),
      memsz: r.u64(p + 40, "p_memsz"),
    });
  }

  const raw: (Omit<Section, "name"> & { nameIdx: number })[] = [];
  let nameOff = 0;
  for (let i = 0; i < shnum; i++) {
    const s = shoff + i * shentsize;
    r.check(s, 64, "section header");
    const sec = {
      nameIdx: r.u32(s, "sh_name"),
      type: r.u32(s + 4, "sh_type"),
      offset: Number(r.u64(s + 24, "sh_offset")),
      size: Number(r.u64(s + 32, "sh_size")),
      link: r.u32(s + 40, "sh_link"),
      entsize: Number(r.u64(s + 56, "sh_entsize")),
    };
    if (i === shstrndx) nameOff = sec.offset;
    raw.push(sec);
  }
  const sections: Section[] = raw.map(({ nameIdx, ...rest }) => ({
    ...rest,
    name: nameOff ? r.cstr(nameOff + nameIdx, "section name") : "",
  }));

  const dynsym = sections.find((s) => s.type === SHT_DYNSYM);
  const symbols: ElfSymbol[] = [];
  if (dynsym) {
    const strtab = sections[dynsym.link];
    if (!strtab) throw new BerthError("not a valid ELF file: .dynsym has no string table");
    const versions = versionNames(r, sections);
    const versym = sections.find((s) => s.type === SHT_GNU_VERSYM);
    const count = dynsym.entsize ? Math.floor(dynsym.size / dynsym.entsize) : 0;
    r.check(dynsym.offset, count * 24, ".dynsym");
    for (let i = 0; i < count; i++) {
      const o = dynsym.offset + i * 24;
      const info = r.u8(o + 4, "st_info");
      const shndx = r.u16(o + 6, "st_shndx");
      const t = info & 0xf;
      const b = info >> 4;
      const vs = versym ? r.u16(versym.offset + i * 2, ".gnu.version") : 0;
      symbols.push({
        name: r.cstr(strtab.offset + r.u32(o, "st_name"), "symbol name"),
        value: r.u64(o + 8, "st_value"),
        size: Number(r.u64(o + 16, "st_size")),
        type: t === 2 ? "func" : t === 10 ? "ifunc" : t === 1 ? "object" : "other",
        bind: b === 1 ? "global" : b === 2 ? "weak" : b === 0 ? "local" : "other",
        defined: shndx !== 0,
        // Indices 0 and 1 are "local" and "global": no version (index 1's definition is the file's own name).
        version: (vs & 0x7fff) > 1 ? versions.get(vs & 0x7fff) : undefined,
        hidden: (vs & 0x8000) !== 0,
      });
    }
  }

  const relocations: ElfRelocation[] = [];
  for (const s of sections.filter((x) => x.type === SHT_RELA)) {
    const n = s.entsize ? Math.floor(s.size / s.entsize) : 0;
    r.check(s.offset, n * 24, s.name || "relocations");
    for (let i = 0; i < n; i++) {
      const o = s.offset + i * 24;
      const info = r.u64(o + 8, "r_info");
      const symIdx = Number(info >> 32n);
      relocations.push({
        offset: r.u64(o, "r_offset"),
        type: Number(info & 0xffffffffn),
        symbol: symIdx ? symbols[symIdx]?.name : undefined,
      });
    }
  }

  let soname: string | undefined;
  const dyn = sections.find((s) => s.type === SHT_DYNAMIC);
  const dynstr = dyn ? sections[dyn.link] : undefined;
  if (dyn && dynstr)
    for (let o = dyn.offset; o + 16 <= dyn.offset + dyn.size; o += 16) {
      const tag = r.u64(o, "d_tag");
      if (tag === 0n) break;
      if (tag === 14n) soname = r.cstr(dynstr.offset + Number(r.u64(o + 8, "d_val")), "DT_SONAME");
    }
  return { type, loads, symbols, relocations, soname };
}

/** Version index → name, from the version definitions and needs. */
function versionNames(r: Reader, sections: Section[]): Map<number, string> {
  const out = new Map<number, string>();
  const verdef = sections.find((s) => s.type === SHT_GNU_VERDEF);
  if (verdef) {
    const strOff = sections[verdef.link]?.offset ?? 0;
    let o = verdef.offset;
    for (let guard = 0; guard < 65536; guard++) {
      const ndx = r.u16(o + 4, "vd_ndx");
      const aux = r.u32(o + 12, "vd_aux");
      const next = r.u32(o + 16, "vd_next");
      out.set(ndx, r.cstr(strOff + r.u32(o + aux, "vda_name"), "version name"));
      if (!next) break;
      o += next;
    }
  }
  const verneed = sections.find((s) => s.type === SHT_GNU_VERNEED);
  if (verneed) {
    const strOff = sections[verneed.link]?.offset ?? 0;
    let o = verneed.offset;
    for (let guard = 0; guard < 65536; guard++) {
      const cnt = r.u16(o + 2, "vn_cnt");
      let a = o + r.u32(o + 8, "vn_aux");
      for (let j = 0; j < cnt; j++) {
        out.set(r.u16(a + 6, "vna_other"), r.cstr(strOff + r.u32(a + 8, "vna_name"), "version name"));
        const an = r.u32(a + 12, "vna_next");
        if (!an) break;
        a += an;
      }
      const next = r.u32(o + 12, "vn_next");
      if (!next) break;
      o += next;
    }
  }
  return out;
}

/** Functions a library exports (defined, global or weak, default version). */
export function exportedFunctions(elf: ElfFile): ElfSymbol[] {
  return elf.symbols.filter(
    (s) =>
      s.defined &&
      (s.type === "func" || s.type === "ifunc") &&
      (s.bind === "global" || s.bind === "weak") &&
      !s.hidden,
  );
}

/**
 * Where the object is loaded: the start of its first mapping minus its lowest (page-aligned) load
 * address, the amount to add to any address in the file (symbols, relocations).
 */
export function loadBias(mappingStart: bigint, elf: ElfFile): bigint {
  let low = elf.loads[0]?.vaddr ?? 0n;
  for (const l of elf.loads) if (l.vaddr < low) low = l.vaddr;
  return mappingStart - (low & ~0xfffn);
}
