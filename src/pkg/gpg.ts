// OpenPGP verification of archive metadata, driven through the system gpgv: the signed text we use is
// what gpgv outputs, never the input file, so nothing outside the signature can slip in.

import { spawn } from "node:child_process";
import { BerthError } from "../common/errors.ts";

export interface VerifiedText {
  text: string;
  /** gpgv's "Good signature from ..." lines. */
  signers: string[];
}

function runGpgv(args: string[], input?: Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("gpgv", args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", (e: NodeJS.ErrnoException) =>
      reject(
        new BerthError(e.code === "ENOENT" ? "gpgv is not installed (apt-get install gpgv)" : e.message),
      ),
    );
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

function signersOf(stderr: string): string[] {
  return [...stderr.matchAll(/Good signature from "([^"]+)"/g)].map((m) => m[1]!);
}

function failure(what: string, stderr: string): BerthError {
  const reason =
    stderr
      .split("\n")
      .map((l) => l.replace(/^gpgv:\s*/, "").trim())
      .filter((l) =>
        /BAD signature|No public key|Can't check|no valid OpenPGP|not a detached|verify signatures failed|no signature found/i.test(
          l,
        ),
      )
      .pop() ?? "signature verification failed";
  return new BerthError(`${what}: OpenPGP signature is not valid (${reason})`);
}

/** Verifies a clear-signed file (InRelease) and returns the signed text. */
export async function verifyClearsigned(data: Buffer, keyring: string, what: string): Promise<VerifiedText> {
  const r = await runGpgv(["--keyring", keyring, "--output", "-", "-"], data);
  if (r.code !== 0 || r.stdout.length === 0) throw failure(what, r.stderr);
  return { text: r.stdout.toString("utf8"), signers: signersOf(r.stderr) };
}

/** Verifies a detached signature (Release + Release.gpg), given as file paths. */
export async function verifyDetached(
  dataPath: string,
  sigPath: string,
  keyring: string,
  what: string,
): Promise<string[]> {
  const r = await runGpgv(["--keyring", keyring, sigPath, dataPath]);
  if (r.code !== 0) throw failure(what, r.stderr);
  return signersOf(r.stderr);
}
