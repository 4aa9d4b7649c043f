// What long-running library code reports its progress to. The CLI supplies a terminal bar; library
// callers and tests get the silent one.

export interface ProgressTask {
  /** Adds to the amount done (bytes, items). */
  advance(n: number): void;
  /** Grows the total when more work is discovered. */
  addTotal(n: number): void;
  done(): void;
}

export interface Progress {
  task(label: string, total?: number, unit?: "bytes" | "items"): ProgressTask;
  /** A one-line status message, shown only on a terminal. */
  note(message: string): void;
}

const noopTask: ProgressTask = { advance() {}, addTotal() {}, done() {} };

export const silentProgress: Progress = {
  task: () => noopTask,
  note() {},
};
