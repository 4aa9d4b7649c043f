// How the CLI shows progress. On a terminal: progress bars (cli-progress) for work slower than a second,
// and status notes. Anywhere else (a pipe, a CI log, `./run demo > log`): plain lines, one per phase,
// each stamped with the time since the command started, and a closing line with the duration of each
// task that ran (like `docker build --progress=plain`), so a log shows what happened and how long it
// took. Never anything with --quiet or --json. BERTH_PROGRESS=plain|tty|none overrides the choice.

import cliProgress from "cli-progress";
import { formatBytes } from "../common/format.ts";
import type { Progress, ProgressTask } from "../common/progress.ts";
import { silentProgress } from "../common/progress.ts";

const SHOW_AFTER_MS = 1000;

type Unit = "bytes" | "items";

const amount = (n: number, unit: Unit) => (unit === "bytes" ? formatBytes(n) : String(n));

class TerminalProgress implements Progress {
  private readonly stream: NodeJS.WriteStream;
  constructor(stream: NodeJS.WriteStream) {
    this.stream = stream;
  }

  note(message: string): void {
    this.stream.write(`\r\x1b[K${message}\n`);
  }

  task(label: string, total = 0, unit: Unit = "items"): ProgressTask {
    const stream = this.stream;
    let done = 0;
    let max = total;
    let bar: cliProgress.SingleBar | undefined;
    const payload = () => ({ label, doneText: amount(done, unit), totalText: amount(max, unit) });
    const timer = setTimeout(() => {
      bar = new cliProgress.SingleBar(
        {
          stream,
          format: "{label} [{bar}] {percentage}% {doneText}/{totalText} eta {eta_formatted}",
          hideCursor: true,
          clearOnComplete: true,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.max(max, 1), done, payload());
    }, SHOW_AFTER_MS);
    timer.unref();
    return {
      advance(n) {
        done += n;
        bar?.update(done, payload());
      },
      addTotal(n) {
        max += n;
        bar?.setTotal(Math.max(max, 1));
      },
      done() {
        clearTimeout(timer);
        bar?.stop();
      },
    };
  }
}

/** `[  12.3s] message`: the time since the command started, right-aligned so a log's columns line up. */
export function plainLine(elapsedMs: number, message: string): string {
  return `[${(elapsedMs / 1000).toFixed(1).padStart(6)}s] ${message}\n`;
}

/** A task's closing line: what it did and how long it took. */
export function plainTaskDone(
  label: string,
  seconds: number,
  done: number,
  total: number,
  unit: Unit,
): string {
  const what =
    done > 0
      ? total > 0 && done < total
        ? `${amount(done, unit)} of ${amount(total, unit)}`
        : amount(done, unit)
      : "";
  return `${label}: ${what ? `${what} ` : ""}done in ${seconds.toFixed(1)} s`;
}

/**
 * Progress for logs: every note is a line, a task that runs longer than a second announces itself, and
 * every task ends with one line giving its duration. Nothing is redrawn, so a pipe or a file gets
 * exactly what a reader of the log needs.
 */
export class PlainProgress implements Progress {
  private readonly write: (text: string) => void;
  private readonly now: () => number;
  private readonly started: number;
  constructor(write: (text: string) => void, now: () => number = () => performance.now()) {
    this.write = write;
    this.now = now;
    this.started = now();
  }

  private line(message: string): void {
    this.write(plainLine(this.now() - this.started, message));
  }

  note(message: string): void {
    this.line(message);
  }

  task(label: string, total = 0, unit: Unit = "items"): ProgressTask {
    const t0 = this.now();
    let done = 0;
    let max = total;
    let finished = false;
    // A slow task says it started, so a log never sits silent for long without saying why.
    const timer = setTimeout(() => this.line(`${label} ...`), SHOW_AFTER_MS);
    timer.unref();
    return {
      advance: (n) => {
        done += n;
      },
      addTotal: (n) => {
        max += n;
      },
      done: () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        this.line(plainTaskDone(label, (this.now() - t0) / 1000, done, max, unit));
      },
    };
  }
}

export type ProgressMode = "tty" | "plain" | "none";

/** The renderer for a command: none with --quiet or --json, else BERTH_PROGRESS, else by the stream. */
export function progressMode(
  opts: { quiet?: boolean; json?: boolean },
  isTTY: boolean,
  env: string | undefined,
): ProgressMode {
  if (opts.quiet || opts.json) return "none";
  if (env === "tty" || env === "plain" || env === "none") return env;
  return isTTY ? "tty" : "plain";
}

export function progressFor(opts: { quiet?: boolean; json?: boolean }): Progress {
  const stream = process.stderr;
  const mode = progressMode(opts, !!stream.isTTY, process.env.BERTH_PROGRESS);
  if (mode === "none") return silentProgress;
  if (mode === "tty") return new TerminalProgress(stream);
  return new PlainProgress((text) => stream.write(text));
}
