// Glue between the repository and live patching, for the CLI: the identity of a shared library and the
// facts of a kernel module (read with src/patch's ELF and modinfo readers) for `berth repo add
// livepatch-*`, and `--from-repo` for `berth patch lib apply` / `berth patch kernel load`: the target
// downloaded through the TUF client (verified before it exists on disk) and checked against this node
// before it is handed to the usual code path.

import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join, posix } from "node:path";
import { BerthError, errorLine, UsageError } from "../../common/errors.ts";
import { sha256Hex } from "../../common/hash.ts";
import { exportedFunctions, parseElf } from "../../patch/elf.ts";
import { modinfo, moduleIsSigned } from "../../patch/klp.ts";
import { commandName, libraryMappings, mappedFile, processesMapping, readMaps } from "../../patch/proc.ts";
import { BAKED_ROOT, defaultCacheDir, RepoClient, type RepoTarget } from "../../repo/client.ts";
import {
  type LibraryIdentity,
  type LivepatchKernelCustom,
  type LivepatchLibCustom,
  libraryMismatch,
  type ModuleFacts,
} from "../../repo/kinds/livepatch.ts";

export function libraryIdentityOf(bytes: Buffer, what: string): LibraryIdentity {
  let elf: ReturnType<typeof parseElf>;
  try {
    elf = parseElf(bytes);
  } catch (e) {
    throw new BerthError(`${what}: ${(e as Error).message}`);
  }
  const list = exportedFunctions(elf)
    .map((s) => (s.version ? `${s.name}@${s.version}` : s.name))
    .sort();
  return {
    ...(elf.soname ? { soname: elf.soname } : {}),
    ...(elf.buildId ? { buildId: elf.buildId } : {}),
    symbols: list.length,
    symbolsSha256: sha256Hex(list.join("\n")),
  };
}

export function moduleFactsOf(ko: Buffer): ModuleFacts {
  const info = modinfo(ko);
  return {
    name: info.get("name"),
    vermagic: info.get("vermagic"),
    livepatch: info.get("livepatch") === "Y",
    replace: info.get("berth_replace") === "Y",
    signed: moduleIsSigned(ko),
  };
}

export interface FromRepoOptions {
  url: string;
  name: string;
  trustedRoot?: string;
  kind: "livepatch-lib" | "livepatch-kernel";
}

export interface FetchedPatch {
  /** The verified file, named as the target's file name. */
  file: string;
  target: RepoTarget;
  cleanup(): Promise<void>;
}

/** Downloads a livepatch target through the TUF client into a private temp directory. */
export async function fetchLivepatch(o: FromRepoOptions): Promise<FetchedPatch> {
  const trustedRoot = o.trustedRoot ?? BAKED_ROOT;
  if (!existsSync(trustedRoot))
    throw new UsageError(
      `--from-repo needs a trusted root: this system has no ${BAKED_ROOT}; pass --trusted-root FILE`,
    );
  const client = new RepoClient({ url: o.url, trustedRoot, cacheDir: defaultCacheDir(trustedRoot) });
  await client.refresh();
  const target = await client.target(o.name);
  if (!target) throw new BerthError(`no target named ${o.name} in ${client.url}`);
  if (target.custom.kind !== o.kind)
    throw new BerthError(`target ${o.name} is a ${String(target.custom.kind)}, not a ${o.kind}`);
  const dir = await mkdtemp(join(tmpdir(), "berth-from-repo-"));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const file = join(dir, posix.basename(o.name));
    await client.download(o.name, file);
    return { file, target, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Refuses a kernel livepatch target built for another kernel than the running one. */
export function checkKernelRelease(t: RepoTarget): void {
  const c = t.custom as LivepatchKernelCustom;
  if (c.kernelRelease !== release())
    throw new BerthError(
      `target ${t.name} is built for kernel ${c.kernelRelease}; this kernel is ${release()}`,
    );
}

/** Refuses a process whose mapped library is not the build the patch target was made for. */
export function checkMappedLibrary(pid: number, t: RepoTarget): void {
  const c = t.custom as LivepatchLibCustom;
  const m = libraryMappings(readMaps(pid), c.library).filter(
    (x) => !x.path.includes("/berth-patch/") && !x.path.includes("/patch/libs/"),
  )[0];
  if (!m) throw new BerthError(`process ${pid} does not map ${c.library}`);
  const why = libraryMismatch(c, libraryIdentityOf(mappedFile(pid, m), m.path));
  if (why) throw new BerthError(`refusing ${t.name} for process ${pid}: its ${m.path} has ${why}`);
}

/** The options --from-repo adds to `berth patch lib apply` and `berth patch kernel load`. */
export interface FromRepoFlags {
  fromRepo?: string;
  trustedRoot?: string;
}

export interface RepoLibrary {
  /** The verified replacement, and the mapped library it replaces (for --lib). */
  path: string;
  lib: string;
  /**
   * The processes to patch — those named, or every one that maps the library — less those whose mapped
   * library is another build than the patch is for, which come back as refusals.
   */
  select(pids: number[] | undefined): {
    pids: number[];
    refused: { pid: number; comm: string; lib: string; reason: string }[];
  };
  cleanup(): Promise<void>;
}

/**
 * `berth patch lib apply --from-repo URL NAME`: the livepatch-lib target downloaded and verified, with
 * --lib defaulting to the library it replaces. Undefined without --from-repo.
 */
export async function repoLibrary(
  target: string | undefined,
  o: FromRepoFlags & { lib?: string; new?: string; fromDeb?: string },
): Promise<RepoLibrary | undefined> {
  if (!o.fromRepo) {
    if (target) throw new UsageError(`a target name (${target}) goes with --from-repo URL`);
    return undefined;
  }
  if (!target) throw new UsageError("--from-repo URL wants the target's name: --from-repo URL NAME");
  if (o.new || o.fromDeb) throw new UsageError("give one of --new, --from-deb and --from-repo");
  const got = await fetchLivepatch({
    url: o.fromRepo,
    name: target,
    trustedRoot: o.trustedRoot,
    kind: "livepatch-lib",
  });
  const lib = o.lib ?? (got.target.custom as LivepatchLibCustom).library;
  return {
    path: got.file,
    lib,
    select(pids) {
      const refused: { pid: number; comm: string; lib: string; reason: string }[] = [];
      const ok = (pids ?? processesMapping(lib)).filter((pid) => {
        try {
          checkMappedLibrary(pid, got.target);
          return true;
        } catch (e) {
          refused.push({ pid, comm: commandName(pid), lib, reason: errorLine(e) });
          return false;
        }
      });
      return { pids: ok, refused };
    },
    cleanup: got.cleanup,
  };
}

/** What `berth patch kernel load` loads: the .ko given, or with --from-repo URL the named target. */
export async function kernelPatchSource(
  module: string,
  o: { fromRepo?: string; trustedRoot?: string },
): Promise<{ path: string; cleanup(): Promise<void> }> {
  if (!o.fromRepo) {
    if (!existsSync(module)) throw new UsageError(`no such module: ${module}`);
    return { path: module, cleanup: async () => {} };
  }
  const got = await fetchLivepatch({
    url: o.fromRepo,
    name: module,
    trustedRoot: o.trustedRoot,
    kind: "livepatch-kernel",
  });
  try {
    checkKernelRelease(got.target);
  } catch (e) {
    await got.cleanup();
    throw e;
  }
  return { path: got.file, cleanup: got.cleanup };
}
