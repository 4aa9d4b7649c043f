// A reader for the parts of ELF64 x86-64 shared objects live patching needs: dynamic symbols with their
// sizes and version names, sections and segments, the dynamic section (initializers, soname), dynamic
// relocations with their addends (RELA and packed RELR), and the build ID. Hand-written because no
// maintained npm library reads symbol versions; every offset is bounds-checked so a truncated or
// hostile file fails with one line instead of reading garbage.

import { BerthError } from "../common/errors.ts";

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
  /** The symbol's version name, when it has one. */
  symbolVersion?: string;
  addend: bigint;
}

export interface ElfSection {
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

export interface ElfSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfFile {
  type: number;
  loads: { vaddr: bigint; offset: bigint; filesz: bigint; memsz: bigint; flags: number }[];
  segments: ElfSegment[];
  sections: ElfSection[];
  symbols: ElfSymbol[];
  relocations: ElfRelocation[];
  soname?: string;
  /** DT_INIT and the DT_INIT_ARRAY table (address and size): code that runs when the object is loaded. */
  init?: number;
  initArray?: { addr: number; size: number };
  buildId?: string;
}

export const R_X86_64_64 = 1;
export const R_X86_64_GLOB_DAT = 6;
export const R_X86_64_JUMP_SLOT = 7;
export const R_X86_64_RELATIVE = 8;
export const R_X86_64_DTPMOD64 = 16;
export const R_X86_64_DTPOFF64 = 17;
export const R_X86_64_TPOFF64 = 18;
export const R_X86_64_IRELATIVE = 37;
export const PT_LOAD = 1;
export const PT_TLS = 7;
export const PF_X = 1;
export const PF_W = 2;
export const SHF_WRITE = 1;
export const SHF_ALLOC = 2;
export const SHF_EXECINSTR = 4;
export const SHT_NOBITS = 8;

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

type Section = ElfSection;

const SHT_RELA = 4;
const SHT_RELR = 19;
const SHT_NOTE = 7;
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
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    r.check(p, 56, "program header");
    const seg = {
      type: r.u32(p, "p_type"),
      flags: r.u32(p + 4, "p_flags"),
      offset: r.u64(p + 8, "p_offset"),
      vaddr: r.u64(p + 16, "p_vaddr"),
      filesz: r.u64(p + 32, "p_filesz"),
      memsz: r.u64(p + 40, "p_memsz"),
    };
    segments.push({
      type: seg.type,
      flags: seg.flags,
      offset: safeNumber(seg.offset, "p_offset"),
      vaddr: safeNumber(seg.vaddr, "p_vaddr"),
      filesz: safeNumber(seg.filesz, "p_filesz"),
      memsz: safeNumber(seg.memsz, "p_memsz"),
    });
    if (seg.type === PT_LOAD) {
      const { type: _, ...load } = seg;
      loads.push(load);
    }
  }

  const raw: (Omit<Section, "name"> & { nameIdx: number })[] = [];
  let nameOff = 0;
  for (let i = 0; i < shnum; i++) {
    const s = shoff + i * shentsize;
    r.check(s, 64, "section header");
    const sec = {
      nameIdx: r.u32(s, "sh_name"),
      type: r.u32(s + 4, "sh_type"),
      flags: Number(r.u64(s + 8, "sh_flags") & 0xffffffffn),
      addr: safeNumber(r.u64(s + 16, "sh_addr"), "sh_addr"),
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
      const sym = symIdx ? symbols[symIdx] : undefined;
      relocations.push({
        offset: r.u64(o, "r_offset"),
        type: Number(info & 0xffffffffn),
        symbol: sym?.name,
        symbolVersion: sym?.version,
        addend: BigInt.asIntN(64, r.u64(o + 16, "r_addend")),
      });
    }
  }
  // Packed relative relocations (DT_RELR): an address, then bitmaps of the 63 words after it. The
  // addend is the word already in the file at that address.
  for (const s of sections.filter((x) => x.type === SHT_RELR)) {
    r.check(s.offset, s.size, s.name || ".relr.dyn");
    let where = 0n;
    const add = (at: bigint) => {
      const off = fileOffsetOf(segments, at);
      relocations.push({
        offset: at,
        type: R_X86_64_RELATIVE,
        addend: off === undefined ? 0n : BigInt.asIntN(64, r.u64(off, "RELR target")),
      });
    };
    for (let o = s.offset; o + 8 <= s.offset + s.size; o += 8) {
      const w = r.u64(o, "RELR entry");
      if ((w & 1n) === 0n) {
        add(w);
        where = w + 8n;
      } else {
        for (let bit = 1n; bit < 64n; bit++) if ((w >> bit) & 1n) add(where + (bit - 1n) * 8n);
        where += 63n * 8n;
      }
    }
  }

  let soname: string | undefined;
  let init: number | undefined;
  let initArrayAddr: number | undefined;
  let initArraySize = 0;
  const dyn = sections.find((s) => s.type === SHT_DYNAMIC);
  const dynstr = dyn ? sections[dyn.link] : undefined;
  if (dyn && dynstr)
    for (let o = dyn.offset; o + 16 <= dyn.offset + dyn.size; o += 16) {
      const tag = r.u64(o, "d_tag");
      const val = r.u64(o + 8, "d_val");
      if (tag === 0n) break;
      if (tag === 14n) soname = r.cstr(dynstr.offset + Number(val), "DT_SONAME");
      else if (tag === 12n) init = safeNumber(val, "DT_INIT");
      else if (tag === 25n) initArrayAddr = safeNumber(val, "DT_INIT_ARRAY");
      else if (tag === 27n) initArraySize = safeNumber(val, "DT_INIT_ARRAYSZ");
    }
  let buildId: string | undefined;
  for (const s of sections.filter((x) => x.type === SHT_NOTE && x.name === ".note.gnu.build-id")) {
    r.check(s.offset, 16, s.name);
    const namesz = r.u32(s.offset, "note namesz");
    const descsz = r.u32(s.offset + 4, "note descsz");
    const desc = s.offset + 12 + ((namesz + 3) & ~3);
    r.check(desc, descsz, "build ID");
    buildId = buf.toString("hex", desc, desc + descsz);
  }
  return {
    type,
    loads,
    segments,
    sections,
    symbols,
    relocations,
    soname,
    init,
    initArray: initArrayAddr === undefined ? undefined : { addr: initArrayAddr, size: initArraySize },
    buildId,
  };
}

function safeNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new BerthError(`not a valid ELF file: ${what} is out of range`);
  return Number(v);
}

/** The file offset that holds a virtual address, from the load segments (undefined for bss or unmapped). */
export function fileOffsetOf(segments: ElfSegment[], vaddr: bigint | number): number | undefined {
  const v = Number(vaddr);
  for (const s of segments)
    if (s.type === PT_LOAD && v >= s.vaddr && v < s.vaddr + s.filesz) return s.offset + (v - s.vaddr);
  return undefined;
}

/** The section that contains a virtual address (allocated sections only). */
export function sectionAt(elf: ElfFile, vaddr: number): ElfSection | undefined {
  for (const s of elf.sections)
    if (s.flags & SHF_ALLOC && s.size > 0 && vaddr >= s.addr && vaddr < s.addr + s.size) return s;
  return undefined;
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
