// A node:test reporter that writes, one JSON string per line, each test file that reported a test that
// ran (passed or failed; skipped and todo tests do not count). scripts/test.ts compares that list with
// the files it found.

import { relative } from "node:path";

interface TestEvent {
  type: string;
  data?: {
    name?: string;
    file?: string;
    nesting?: number;
    skip?: unknown;
    todo?: unknown;
    details?: { type?: string };
  };
}

/**
 * node --test wraps a file that registered no test in a test of its own, named after the file's path
 * from the working directory: that is the file loading, not a test running.
 */
function isFileWrapper(d: NonNullable<TestEvent["data"]>): boolean {
  return d.nesting === 0 && (d.name === d.file || d.name === relative(process.cwd(), d.file ?? ""));
}

export default async function* filesReporter(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const seen = new Set<string>();
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const d = event.data;
    // A suite's own pass/fail event is not a test; skipped or todo tests are not runs.
    if (!d?.file || d.skip !== undefined || d.todo !== undefined || d.details?.type === "suite") continue;
    if (isFileWrapper(d)) continue;
    if (seen.has(d.file)) continue;
    seen.add(d.file);
    yield `${JSON.stringify(d.file)}\n`;
  }
}
