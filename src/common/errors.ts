// The two kinds of failure the CLI reports: the user asked wrongly (exit 2), or the work failed (exit 1).
// Anything else that escapes is a bug, but is still shown as one line.

export class BerthError extends Error {
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BerthError";
  }
}

export class UsageError extends BerthError {
  override readonly exitCode: number = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One line for the terminal, whatever was thrown. */
export function errorLine(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    const msg = e.message.split("\n")[0] ?? "";
    if (e instanceof BerthError || !code) return msg;
    return `${msg} (${code})`;
  }
  return String(e).split("\n")[0] ?? "";
}

export function exitCodeOf(e: unknown): number {
  return e instanceof BerthError ? e.exitCode : 1;
}
