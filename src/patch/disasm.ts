// x86-64 decoding for library comparison and relocation. The instructions are decoded by iced-x86 (from
// npm, a maintained and fuzzed disassembler compiled to WebAssembly); Berth never decodes x86 by hand.
// What Berth needs from each instruction: its length, and where it holds an address that only moved
// between two builds — a near branch or call (rel8/rel32) or a RIP-relative memory operand (disp32) —
// with the target it names. Masking those fields leaves bytes that are equal exactly when the code is.

import {
  Code,
  Decoder,
  DecoderOptions,
  FlowControl,
  Instruction,
  Mnemonic,
  OpKind,
  Register,
} from "iced-x86";
import { type ElfFile, PF_X, PT_LOAD } from "./elf.ts";

export interface CodeRef {
  /** Offsets from the function's start: the instruction, its address field, and the instruction's end. */
  at: number;
  field: number;
  size: 1 | 4;
  next: number;
  /** The address named (object virtual address). */
  target: number;
  /** call/jump: a near branch; lea: an address taken; mem: a load or store through RIP. */
  kind: "call" | "jump" | "lea" | "mem";
}

export interface DecodedFunction {
  /** The bytes with every address field zeroed. */
  masked: Buffer;
  refs: CodeRef[];
  instructions: number;
  /** The last instruction cannot fall through (ret, jmp, ud2, hlt, int3). */
  endsWithoutFallthrough: boolean;
  /** Some bytes did not decode (data inside code, or a range that is not really a function). */
  invalid: boolean;
}

/** One instruction, for the structural checks done on changed functions only. */
export interface InstructionInfo {
  at: number;
  length: number;
  code: number;
  mnemonic: number;
  flow: number;
  /** Base and displacement of a memory operand that is not RIP-relative (a field access like [rbx+0x18]). */
  memBase?: number;
  memIndex?: number;
  memDisplacement?: number;
  /** The first register operand and an immediate operand, if any (mov edi, 0x1f0). */
  register0?: number;
  immediate?: number;
  /** RIP-relative or branch target. */
  target?: number;
}

interface Segment {
  vaddr: number;
  offset: number;
  size: number;
  decoder: Decoder;
}

/** Decodes functions of one ELF object; one iced-x86 decoder per executable segment. */
export class CodeReader {
  readonly bytes: Buffer;
  private readonly segments: Segment[];
  private readonly ins = new Instruction();

  constructor(elf: ElfFile, bytes: Buffer) {
    this.bytes = bytes;
    this.segments = elf.segments
      .filter((s) => s.type === PT_LOAD && s.flags & PF_X && s.filesz > 0)
      .map((s) => {
        const size = Math.min(s.filesz, bytes.length - s.offset);
        return {
          vaddr: s.vaddr,
          offset: s.offset,
          size,
          decoder: new Decoder(64, bytes.subarray(s.offset, s.offset + size), DecoderOptions.None),
        };
      });
  }

  /** Releases the WebAssembly memory behind the decoders. */
  free(): void {
    for (const s of this.segments) s.decoder.free();
    this.ins.free();
  }

  private segmentOf(start: number, end: number): Segment | undefined {
    return this.segments.find((s) => start >= s.vaddr && end <= s.vaddr + s.size);
  }

  /** Whether [start, end) lies in executable bytes of the file. */
  isCode(start: number, end = start + 1): boolean {
    return this.segmentOf(start, end) !== undefined;
  }

  /** The file bytes of [start, end) (code only). */
  raw(start: number, end: number): Buffer | undefined {
    const s = this.segmentOf(start, end);
    return s ? this.bytes.subarray(s.offset + (start - s.vaddr), s.offset + (end - s.vaddr)) : undefined;
  }

  decode(start: number, end: number): DecodedFunction {
    const seg = this.segmentOf(start, end);
    if (!seg || end <= start)
      return {
        masked: Buffer.alloc(0),
        refs: [],
        instructions: 0,
        endsWithoutFallthrough: false,
        invalid: true,
      };
    const raw = this.bytes.subarray(seg.offset + (start - seg.vaddr), seg.offset + (end - seg.vaddr));
    const masked = Buffer.from(raw);
    const refs: CodeRef[] = [];
    const d = seg.decoder;
    const ins = this.ins;
    d.position = start - seg.vaddr;
    d.ip = BigInt(start);
    let off = 0;
    let count = 0;
    let invalid = false;
    let lastFlow = FlowControl.Next;
    let lastCode = 0;
    const len = end - start;
    while (off < len) {
      d.decodeOut(ins);
      const n = ins.length;
      lastCode = ins.code;
      if (lastCode === 0 || off + n > len) {
        invalid = true;
        break;
      }
      count++;
      lastFlow = ins.flowControl;
      const next = off + n;
      if (ins.op0Kind === OpKind.NearBranch64) {
        // rel8 forms (jmp short, jcc short, loop, jrcxz) are at most 3 bytes with a prefix; rel32 forms 5+.
        const size = n <= 3 ? 1 : 4;
        const field = next - size;
        const target = start + next + (size === 1 ? raw.readInt8(field) : raw.readInt32LE(field));
        refs.push({
          at: off,
          field,
          size,
          next,
          target,
          kind: lastFlow === FlowControl.Call ? "call" : "jump",
        });
        masked.fill(0, field, next);
      } else if (ins.isIpRelMemoryOperand) {
        const co = d.getConstantOffsets(ins);
        const field = off + co.displacementOffset;
        co.free();
        const target = start + next + raw.readInt32LE(field);
        refs.push({ at: off, field, size: 4, next, target, kind: isLea(ins) ? "lea" : "mem" });
        masked.fill(0, field, field + 4);
      }
      off = next;
    }
    return {
      masked,
      refs,
      instructions: count,
      endsWithoutFallthrough:
        !invalid &&
        (lastFlow === FlowControl.Return ||
          lastFlow === FlowControl.UnconditionalBranch ||
          lastFlow === FlowControl.IndirectBranch ||
          lastFlow === FlowControl.Exception ||
          lastFlow === FlowControl.Interrupt),
      invalid,
    };
  }

  /** Length of the instruction at `addr` (0 when nothing decodes there). */
  lengthAt(addr: number): number {
    const seg = this.segmentOf(addr, addr + 1);
    if (!seg) return 0;
    seg.decoder.position = addr - seg.vaddr;
    seg.decoder.ip = BigInt(addr);
    seg.decoder.decodeOut(this.ins);
    return this.ins.code === 0 ? 0 : this.ins.length;
  }

  /**
   * How many bytes from `start` (up to `end`) are alignment padding: NOPs of any length, int3 and zero
   * bytes, the fillers assemblers and linkers put between functions.
   */
  paddingLength(start: number, end: number): number {
    const seg = this.segmentOf(start, end);
    if (!seg) return 0;
    const d = seg.decoder;
    const ins = this.ins;
    let off = 0;
    while (start + off < end) {
      const at = seg.offset + (start + off - seg.vaddr);
      if (this.bytes[at] === 0) {
        off++;
        continue;
      }
      d.position = start + off - seg.vaddr;
      d.ip = BigInt(start + off);
      d.decodeOut(ins);
      const m = ins.mnemonic;
      if (ins.code === 0 || (m !== Mnemonic.Nop && m !== Mnemonic.Int3) || start + off + ins.length > end)
        break;
      off += ins.length;
    }
    return off;
  }

  /** Every instruction of [start, end) with the operands the structural checks look at. */
  instructions(start: number, end: number): InstructionInfo[] {
    const seg = this.segmentOf(start, end);
    if (!seg) return [];
    const d = seg.decoder;
    const ins = this.ins;
    d.position = start - seg.vaddr;
    d.ip = BigInt(start);
    const out: InstructionInfo[] = [];
    let off = 0;
    while (off < end - start) {
      d.decodeOut(ins);
      if (ins.code === 0) break;
      const info: InstructionInfo = {
        at: off,
        length: ins.length,
        code: ins.code,
        mnemonic: ins.mnemonic,
        flow: ins.flowControl,
      };
      if (ins.op0Kind === OpKind.NearBranch64) info.target = Number(ins.nearBranch64);
      else if (ins.isIpRelMemoryOperand) info.target = Number(ins.ipRelMemoryAddress);
      else if (hasMemoryOperand(ins) && ins.memoryBase !== Register.None) {
        info.memBase = fullRegister(ins.memoryBase);
        info.memIndex = ins.memoryIndex;
        info.memDisplacement = Number(BigInt.asIntN(64, ins.memoryDisplacement));
      }
      if (ins.op0Kind === OpKind.Register) info.register0 = fullRegister(ins.op0Register);
      for (let i = 1; i < ins.opCount; i++)
        if (isImmediateKind(ins.opKind(i))) {
          info.immediate = Number(BigInt.asIntN(64, ins.immediate(i)));
          break;
        }
      out.push(info);
      off += ins.length;
    }
    return out;
  }
}

function isLea(ins: Instruction): boolean {
  // The only instructions that take an address without a memory access.
  const c = ins.code;
  return c === Code.Lea_r16_m || c === Code.Lea_r32_m || c === Code.Lea_r64_m;
}

function hasMemoryOperand(ins: Instruction): boolean {
  for (let i = 0; i < ins.opCount; i++) if (ins.opKind(i) === OpKind.Memory) return true;
  return false;
}

function isImmediateKind(k: OpKind): boolean {
  return (
    k === OpKind.Immediate8 ||
    k === OpKind.Immediate16 ||
    k === OpKind.Immediate32 ||
    k === OpKind.Immediate64 ||
    k === OpKind.Immediate8to16 ||
    k === OpKind.Immediate8to32 ||
    k === OpKind.Immediate8to64 ||
    k === OpKind.Immediate32to64
  );
}

/** EDI, DI and DIL all name RDI: 32/16/8-bit general registers mapped to their 64-bit register. */
export function fullRegister(r: number): number {
  if (r >= Register.EAX && r <= Register.R15D) return r - Register.EAX + Register.RAX;
  if (r >= Register.AX && r <= Register.R15W) return r - Register.AX + Register.RAX;
  if (r >= Register.AL && r <= Register.BL) return r - Register.AL + Register.RAX;
  if (r >= Register.SPL && r <= Register.R15L) return r - Register.SPL + Register.RSP;
  return r;
}

export { Register };
