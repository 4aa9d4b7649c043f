// How a node proves who it is: Ed25519 signatures over a fixed text, made with the key the node made at
// enrolment. The agent signs with these functions and the server verifies with them, so both sides
// build the same bytes. docs/fleet.md gives the format.

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";

/** Headers of a signed agent request. */
export const NODE_HEADER = "x-berth-node";
export const TIME_HEADER = "x-berth-time";
export const SIGNATURE_HEADER = "x-berth-signature";
/** How far a request's time may be from the server's clock. */
export const MAX_SKEW_MS = 300_000;

export function enrollProofText(token: string, publicKey: string, hostname: string): string {
  return `berth-enroll-1\n${token}\n${publicKey}\n${hostname}`;
}

export function sha256Hex(body: Uint8Array | string): string {
  return createHash("sha256").update(body).digest("hex");
}

export function requestText(method: string, pathWithQuery: string, time: string, bodyHash: string): string {
  return `berth-request-1\n${method.toUpperCase()}\n${pathWithQuery}\n${time}\n${bodyHash}`;
}

export function newNodeKey(): { privatePem: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privatePem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    publicKey: rawPublicKey(publicKey),
  };
}

/** The 32 raw bytes of an Ed25519 public key, base64. */
export function rawPublicKey(key: KeyObject): string {
  const x = key.export({ format: "jwk" }).x;
  if (!x) throw new Error("not an Ed25519 key");
  return Buffer.from(x, "base64url").toString("base64");
}

export function privateKeyFromPem(pem: string): KeyObject {
  return createPrivateKey(pem);
}

/** A public key object from its base64 raw form; undefined when it is not 32 bytes of base64. */
export function publicKeyFromRaw(b64: string): KeyObject | undefined {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(b64)) return undefined;
  const raw = Buffer.from(b64, "base64");
  if (raw.length !== 32) return undefined;
  try {
    return createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
      format: "jwk",
    });
  } catch {
    return undefined;
  }
}

export function signText(key: KeyObject, text: string): string {
  return sign(null, Buffer.from(text, "utf8"), key).toString("base64");
}

export function verifyText(key: KeyObject, text: string, signatureB64: string): boolean {
  if (!/^[A-Za-z0-9+/]{86}==$/.test(signatureB64)) return false;
  try {
    return verify(null, Buffer.from(text, "utf8"), key, Buffer.from(signatureB64, "base64"));
  } catch {
    return false;
  }
}
