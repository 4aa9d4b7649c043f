// `livepatch-lib` and `livepatch-kernel` targets: a fixed shared library with the identity of the exact
// library it replaces (name, soname, build id, and a digest of its exported symbols), and a kernel
// livepatch module with the kernel release it was built for. The facts about the files (ELF, modinfo)
// are read by the caller with src/patch's readers (the CLI does, in commands/livepatch-facts.ts) and
// given here, so the repository part stays below patch; they are checked again on the node before
// anything is applied (`berth patch ... --from-repo`).

import { basename } from "node:path";
import { BerthError } from "../../common/errors.ts";
import type { NewTarget } from "../targets.ts";

/** The identity of one build of a shared library. */
export interface LibraryIdentity {
  soname?: string;
  buildId?: string;
  /** Exported functions (name@version, sorted): how many, and the SHA-256 of the list. */
  symbols: number;
  symbolsSha256: string;
}

export interface LivepatchLibCustom {
  kind: "livepatch-lib";
  /** The library to patch, as `berth patch lib apply --lib` takes it (libssl.so.3). */
  library: string;
  /** The fixed library itself. */
  soname?: string;
  buildId?: string;
  /** The library it replaces; the node checks the mapped library against this before applying. */
  replaces: LibraryIdentity;
  [k: string]: unknown;
}

/** What a kernel module's .modinfo says. */
export interface ModuleFacts {
  name?: string;
  vermagic?: string;
  livepatch: boolean;
  replace: boolean;
  signed: boolean;
}

export interface LivepatchKernelCustom {
  kind: "livepatch-kernel";
  /** The livepatch (and module) name. */
  module: string;
  /** `uname -r` of the kernel it is built for. */
  kernelRelease: string;
  vermagic: string;
  /** A cumulative patch that replaces the ones before it. */
  replace: boolean;
  signed: boolean;
  [k: string]: unknown;
}

/**
 * Why the library a process maps is not the one a patch was made for, or undefined when it is: the build
 * id decides when both have one, else the soname and the exported symbols.
 */
export function libraryMismatch(custom: LivepatchLibCustom, have: LibraryIdentity): string | undefined {
  const want = custom.replaces;
  if (want.buildId && have.buildId)
    return want.buildId === have.buildId
      ? undefined
      : `build id ${have.buildId}; the patch is for ${want.buildId}`;
  if (want.soname && have.soname !== want.soname)
    return `soname ${have.soname ?? "(none)"}; the patch is for ${want.soname}`;
  if (want.symbolsSha256 !== have.symbolsSha256)
    return `other exported functions (${have.symbols}) than the library the patch is for (${want.symbols})`;
  return undefined;
}

export interface LivepatchLibOptions {
  fixed: LibraryIdentity;
  replaces: LibraryIdentity;
  /** The name `--lib` will use on the node; default the replaced library's soname. */
  library?: string;
  name?: string;
}

export function describeLivepatchLib(file: string, o: LivepatchLibOptions): NewTarget[] {
  const { fixed, replaces } = o;
  const library = o.library ?? replaces.soname;
  if (!library) throw new BerthError("the replaced library has no soname; name it with --lib");
  if (fixed.soname && replaces.soname && fixed.soname !== replaces.soname)
    throw new BerthError(
      `${file} has soname ${fixed.soname}; the library it replaces has ${replaces.soname}`,
    );
  if (fixed.buildId && fixed.buildId === replaces.buildId)
    throw new BerthError(`${file} is the same build as the library it replaces (build id ${fixed.buildId})`);
  const custom: LivepatchLibCustom = {
    kind: "livepatch-lib",
    library,
    ...(fixed.soname ? { soname: fixed.soname } : {}),
    ...(fixed.buildId ? { buildId: fixed.buildId } : {}),
    replaces,
  };
  const id = replaces.buildId ?? replaces.symbolsSha256.slice(0, 40);
  return [{ name: o.name ?? `livepatch/lib/${library}/${id}/${basename(file)}`, file, custom }];
}

export function describeLivepatchKernel(
  file: string,
  facts: ModuleFacts,
  o: { name?: string; kernel?: string } = {},
): NewTarget[] {
  if (!facts.vermagic || !facts.name)
    throw new BerthError(`${file} is not a kernel module (no vermagic or name in .modinfo)`);
  if (!facts.livepatch) throw new BerthError(`${file} is a kernel module but not a livepatch`);
  const kernelRelease = facts.vermagic.split(" ")[0]!;
  if (o.kernel && o.kernel !== kernelRelease)
    throw new BerthError(`${file} is built for kernel ${kernelRelease}, not ${o.kernel}`);
  const custom: LivepatchKernelCustom = {
    kind: "livepatch-kernel",
    module: facts.name,
    kernelRelease,
    vermagic: facts.vermagic,
    replace: facts.replace,
    signed: facts.signed,
  };
  return [{ name: o.name ?? `livepatch/kernel/${kernelRelease}/${facts.name}.ko`, file, custom }];
}
