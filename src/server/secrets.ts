// Secrets the server hands out and checks: admin passwords (scrypt from node:crypto), and random
// tokens (API, enrolment, session) that are stored only as their SHA-256.

import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { sha256Hex } from "./signature.ts";

const SCRYPT = { N: 1 << 15, r: 8, p: 1, keylen: 32, maxmem: 64 * 1024 * 1024 };

function scryptAsync(password: string, salt: Buffer, o: typeof SCRYPT): Promise<Buffer> {
  return new Promise((res, rej) =>
    scrypt(password, salt, o.keylen, { N: o.N, r: o.r, p: o.p, maxmem: o.maxmem }, (e, key) =>
      e ? rej(e) : res(key),
    ),
  );
}

/** "scrypt$N$r$p$salt$hash" (base64 parts). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const want = Buffer.from(m[5]!, "base64");
  const got = await scryptAsync(password, Buffer.from(m[4]!, "base64"), {
    ...SCRYPT,
    N: Number(m[1]),
    r: Number(m[2]),
    p: Number(m[3]),
    keylen: want.length,
  });
  return got.length === want.length && timingSafeEqual(got, want);
}

export type SecretKind = "api" | "enroll" | "session";

/** A new random secret, prefixed with what it is for so a leaked one is recognisable. */
export function newSecret(kind: SecretKind): string {
  return `berth-${kind}-${randomBytes(32).toString("base64url")}`;
}

export const hashSecret = (secret: string): string => sha256Hex(secret);
