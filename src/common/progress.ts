// What long-running library code reports its progress to. The CLI supplies a renderer (bars on a
// terminal, one plain line per phase elsewhere); library callers and tests get the silent one. A note
// starts a phase, so library code says what it is about to do, before it does it.

export interface ProgressTask {
  /** Adds to the amount done (bytes, items). */
  advance(n: number): void;
  /** Grows the total when more work is discovered. */
  addTotal(n: number): void;
  done(): void;
}

export interface Progress {
  task(label: string, total?: number, unit?: "bytes" | "items"): ProgressTask;
  /** A one-line status message: the phase that starts now. */
  note(message: string): void;
}

const noopTask: ProgressTask = { advance() {}, addTotal() {}, done() {} };

export const silentProgress: Progress = {
  task: () => noopTask,
  note() {},
};
