// Terminal progress bars (cli-progress) that appear only for work slower than a second, only on a TTY,
// and never with --quiet or --json.

import cliProgress from "cli-progress";
import type { Progress, ProgressTask } from "../common/progress.ts";
import { silentProgress } from "../common/progress.ts";

const SHOW_AFTER_MS = 1000;

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

class TerminalProgress implements Progress {
  private readonly stream: NodeJS.WriteStream;
  constructor(stream: NodeJS.WriteStream) {
    this.stream = stream;
  }

  note(message: string): void {
    this.stream.write(`\r\x1b[K${message}\n`);
  }

  task(label: string, total = 0, unit: "bytes" | "items" = "items"): ProgressTask {
    const stream = this.stream;
    let done = 0;
    let max = total;
    let bar: cliProgress.SingleBar | undefined;
    const fmt = (v: number) => (unit === "bytes" ? formatBytes(v) : String(v));
    const payload = () => ({ label, doneText: fmt(done), totalText: fmt(max) });
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

export function progressFor(opts: { quiet?: boolean; json?: boolean }): Progress {
  const stream = process.stderr;
  if (opts.quiet || opts.json || !stream.isTTY) return silentProgress;
  return new TerminalProgress(stream);
}
