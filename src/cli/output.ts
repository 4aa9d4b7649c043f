// Machine output for the terminal. Tables and sizes for people come from src/common/format.ts.

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
