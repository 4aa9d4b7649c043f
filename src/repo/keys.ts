// Ed25519 signing keys of a Berth repository: one JSON file per key, mode 0600, under a directory per
// role (keys/root/<keyid>.json). The key id is TUF's: the SHA-256 of the canonical JSON of the public
// key, so any TUF client (tuf-js, python-tuf, go-tuf) finds the key from the id in the metadata.

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { canonicalize } from "@tufjs/canonical-json";
import { Key, Signature } from "@tufjs/models";
import { BerthError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import { sha256Hex } from "../common/hash.ts";

export type RoleName = "root" | "targets" | "snapshot" | "timestamp";
export const ROLES: readonly RoleName[] = ["root", "targets", "snapshot", "timestamp"];

export interface SigningKey {
  keyid: string;
  role: RoleName;
  /** The public half as TUF metadata lists it. */
  key: Key;
  private: KeyObject;
  /** The file it was read from or written to. */
  file?: string;
}

interface KeyFile {
  keytype: "ed25519";
  scheme: "ed25519";
  keyid: string;
  role: RoleName;
  keyval: { public: string };
  private: string;
}

function publicKeyOf(publicHex: string): Key {
  const body = { keytype: "ed25519", scheme: "ed25519", keyval: { public: publicHex } };
  return new Key({
    keyID: sha256Hex(canonicalize(body)),
    keyType: body.keytype,
    scheme: body.scheme,
    keyVal: body.keyval,
  });
}

/** The raw 32-byte Ed25519 public key in hex, as TUF's ed25519 scheme lists it. */
function rawPublicHex(pub: KeyObject): string {
  const jwk = pub.export({ format: "jwk" });
  if (!jwk.x) throw new BerthError("not an Ed25519 key");
  return Buffer.from(jwk.x, "base64url").toString("hex");
}

export function generateKey(role: RoleName): SigningKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const key = publicKeyOf(rawPublicHex(publicKey));
  return { keyid: key.keyID, role, key, private: privateKey };
}

/** Writes the key as DIR/<role>/<keyid>.json, mode 0600 in a 0700 directory. */
export async function saveKey(dir: string, k: SigningKey): Promise<string> {
  const roleDir = join(dir, k.role);
  mkdirSync(roleDir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  chmodSync(roleDir, 0o700);
  const body: KeyFile = {
    keytype: "ed25519",
    scheme: "ed25519",
    keyid: k.keyid,
    role: k.role,
    keyval: { public: k.key.keyVal.public! },
    private: k.private.export({ format: "pem", type: "pkcs8" }).toString(),
  };
  const file = join(roleDir, `${k.keyid}.json`);
  await writeFileAtomic(file, `${JSON.stringify(body, null, 2)}\n`, 0o600);
  k.file = file;
  return file;
}

function readKeyFile(file: string): SigningKey {
  let body: KeyFile;
  try {
    body = JSON.parse(readFileSync(file, "utf8")) as KeyFile;
  } catch (e) {
    throw new BerthError(`${file}: not a Berth key file (${(e as Error).message})`);
  }
  if (body.keytype !== "ed25519" || typeof body.private !== "string" || !ROLES.includes(body.role))
    throw new BerthError(`${file}: not a Berth Ed25519 key file`);
  const priv = createPrivateKey(body.private);
  const key = publicKeyOf(rawPublicHex(createPublicKey(priv)));
  if (key.keyID !== body.keyid)
    throw new BerthError(`${file}: the private key does not match key id ${body.keyid}`);
  return { keyid: key.keyID, role: body.role, key, private: priv, file };
}

/**
 * Every key under the given directories (each DIR/<role>/<keyid>.json), by key id. Keys moved to a
 * "retired" directory are not read.
 */
export function loadKeys(dirs: readonly string[]): Map<string, SigningKey> {
  const out = new Map<string, SigningKey>();
  for (const dir of dirs)
    for (const role of ROLES) {
      const roleDir = join(dir, role);
      if (!existsSync(roleDir)) continue;
      for (const f of readdirSync(roleDir))
        if (/^[0-9a-f]{64}\.json$/.test(f)) {
          const k = readKeyFile(join(roleDir, f));
          if (!out.has(k.keyid)) out.set(k.keyid, k);
        }
    }
  return out;
}

/** Moves a key file out of use, into <keys dir>/retired/<role>/, keeping it for the record. */
export function retireKey(k: SigningKey): void {
  if (!k.file) return;
  const roleDir = dirname(k.file);
  const retired = join(dirname(roleDir), "retired", k.role);
  mkdirSync(retired, { recursive: true, mode: 0o700 });
  renameSync(k.file, join(retired, `${k.keyid}.json`));
}

/** A signer for @tufjs/models' Metadata.sign: Ed25519 over the canonical bytes it is given. */
export function signerOf(k: SigningKey): (data: Buffer) => Signature {
  return (data) => new Signature({ keyID: k.keyid, sig: sign(null, data, k.private).toString("hex") });
}
