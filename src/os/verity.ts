// dm-verity for a root slot: veritysetup (Debian's cryptsetup-bin) computes the hash tree of the squashfs
// root image at build time. In a slot the tree follows the image at `hashOffset`; the root hash goes into
// the release's signed metadata and the boot entry's command line, and the initramfs opens the slot with
// `veritysetup open` so every block read is checked against it. Salt and UUID derive from the build's
// seed, so the same image gives the same tree and root hash (builds stay reproducible).

import { createHash } from "node:crypto";
import { chmod, rm, stat } from "node:fs/promises";
import { BerthError } from "../common/errors.ts";
import { runChecked } from "../common/exec.ts";
import { stableUuid } from "./disk.ts";

export const VERITY_BLOCK = 4096;

export interface VerityInfo {
  algorithm: "sha256";
  dataBlockSize: number;
  hashBlockSize: number;
  /** Bytes of the data (the squashfs image) the tree covers. */
  dataBytes: number;
  /** Where the hash tree starts in the slot: right after the data. */
  hashOffset: number;
  /** Bytes of the hash tree file (superblock included). */
  hashBytes: number;
  salt: string;
  uuid: string;
  rootHash: string;
}

/** The root hash from `veritysetup format` output ("Root hash:  <hex>"). */
export function parseRootHash(output: string): string {
  const m = /^Root hash:\s+([0-9a-f]{64})\s*$/m.exec(output);
  if (!m) throw new BerthError("veritysetup format printed no root hash");
  return m[1]!;
}

/** Writes the hash tree of `data` to `hashFile` and returns what a slot and a boot entry need. */
export async function formatVerity(data: string, hashFile: string, seed: string): Promise<VerityInfo> {
  const dataBytes = (await stat(data)).size;
  // mksquashfs pads its image to 4 KiB; a tail shorter than a block would be left unprotected.
  if (dataBytes % VERITY_BLOCK !== 0)
    throw new BerthError(`${data} is ${dataBytes} bytes, not a multiple of ${VERITY_BLOCK}`);
  const salt = createHash("sha256").update(`${seed}/verity-salt`).digest("hex");
  const uuid = stableUuid(`${seed}/verity`);
  await rm(hashFile, { force: true });
  const r = await runChecked("veritysetup format", "veritysetup", [
    "format",
    data,
    hashFile,
    "--hash=sha256",
    `--data-block-size=${VERITY_BLOCK}`,
    `--hash-block-size=${VERITY_BLOCK}`,
    `--salt=${salt}`,
    `--uuid=${uuid}`,
  ]);
  await chmod(hashFile, 0o644);
  return {
    algorithm: "sha256",
    dataBlockSize: VERITY_BLOCK,
    hashBlockSize: VERITY_BLOCK,
    dataBytes,
    hashOffset: dataBytes,
    hashBytes: (await stat(hashFile)).size,
    salt,
    uuid,
    rootHash: parseRootHash(r.stdout),
  };
}

/** Checks a slot (or a file) holding data and tree against a root hash: veritysetup verify reads it all. */
export async function verifySlot(
  device: string,
  v: Pick<VerityInfo, "hashOffset" | "rootHash">,
): Promise<void> {
  await runChecked("veritysetup verify", "veritysetup", [
    "verify",
    device,
    device,
    v.rootHash,
    `--hash-offset=${v.hashOffset}`,
  ]);
}
