// System calls run inside a stopped process through the ptrace helper: mapping the patch image (an
// anonymous reservation, then the new build's file over it, segment by segment, read-only), and
// unmapping it at rollback. No code is loaded and no initializer runs: the dynamic loader never hears
// of the image, so the process keeps one copy of the library's state.

import { closeSync, openSync, readSync } from "node:fs";
import { BerthError } from "../common/errors.ts";
import { type ElfSegment, PF_X } from "./elf.ts";
import type { PtraceHelper } from "./helper.ts";
import { alignUp, type ImageLayout, PAGE } from "./image.ts";
import type { Mapping } from "./proc.ts";

const SYS_MUNMAP = 11;
const PROT_READ = 1n;
const PROT_EXEC = 4n;

/** A `syscall` instruction (0f 05) in the process's executable memory: libc's, or any other's. */
export function findSyscallInstruction(pid: number, maps: Mapping[]): bigint {
  const exec = maps.filter((m) => m.perms.includes("x") && m.path !== "[vsyscall]");
  exec.sort((a, b) => Number(/libc[.-]/.test(b.path)) - Number(/libc[.-]/.test(a.path)));
  const fd = openSync(`/proc/${pid}/mem`, "r");
  try {
    for (const m of exec) {
      const len = Number(m.end - m.start < 1n << 22n ? m.end - m.start : 1n << 22n);
      const buf = Buffer.alloc(len);
      try {
        readSync(fd, buf, 0, len, m.start);
      } catch {
        continue;
      }
      for (let i = buf.indexOf(0x0f); i >= 0 && i + 1 < len; i = buf.indexOf(0x0f, i + 1))
        if (buf[i + 1] === 0x05) return m.start + BigInt(i);
    }
  } finally {
    closeSync(fd);
  }
  throw new BerthError(`process ${pid} has no syscall instruction in its code`);
}

/**
 * Maps the image into the stopped process, in one helper request: reserves [base, base+size) (only
 * where nothing is mapped), writes the staged file's path there, opens it, maps each load segment over
 * the reservation at its offset (read-only; code read and execute) and closes it. The helper undoes the
 * reservation on any failure.
 */
export async function mapImage(
  h: PtraceHelper,
  insn: bigint,
  image: ImageLayout,
  path: string,
  segments: ElfSegment[],
): Promise<void> {
  const pieces: bigint[][] = [];
  for (const s of segments) {
    if (s.filesz === 0) continue;
    const pageOff = BigInt(s.vaddr) & (PAGE - 1n);
    pieces.push([
      image.base + BigInt(s.vaddr) - pageOff,
      alignUp(BigInt(s.filesz) + pageOff),
      s.flags & PF_X ? PROT_READ | PROT_EXEC : PROT_READ,
      BigInt(s.offset) - pageOff,
    ]);
  }
  const pathHex = Buffer.from(path).toString("hex");
  if (path.length > 4000) throw new BerthError("the staged library's path is too long");
  const args = [insn, image.base, image.size, image.pathAt].map((x) => x.toString(16));
  await h
    .send(
      `mapimage ${args.join(" ")} ${pathHex} ${pieces.length} ${pieces
        .flat()
        .map((x) => x.toString(16))
        .join(" ")}`,
    )
    .catch((e: Error) => {
      throw new BerthError(`mapping the patch into the process failed: ${e.message}`);
    });
}

/** Unmaps ranges of patch memory in the stopped process. */
export async function unmap(h: PtraceHelper, insn: bigint, ranges: [bigint, bigint][]): Promise<void> {
  for (const [a, b] of ranges) {
    const r = await h.syscall(SYS_MUNMAP, [a, b - a], insn);
    if (r !== 0n) throw new BerthError(`unmapping the patch memory failed (${r})`);
  }
}
