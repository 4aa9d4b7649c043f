// The agent's on-disk report queue, in the manner of Landscape's client: every report gets the next
// sequence number and is written to STATE/queue/SEQ.json before it is sent; entries go only when the
// server acknowledges their seq. The snapshot the last entry leads to (STATE/snapshot.json) is what the
// next delta is computed against. A queue that grew while the server was away is folded into one full
// report.

import type { Report } from "../server/api-schemas.ts";
import { deltaReport, fullReport, type Snapshot } from "./delta.ts";
import type { Store } from "./state.ts";

/** More queued reports than this become one full report. */
export const MAX_QUEUED = 100;

interface Last {
  seq: number;
  snapshot: Snapshot;
}

const fileOf = (seq: number) => `queue/${String(seq).padStart(12, "0")}.json`;

export class ReportQueue {
  private readonly state: Store;
  constructor(state: Store) {
    this.state = state;
    this.state.ensure();
    // A queue entry written just before a kill, whose snapshot was not: never sent, so dropped here and
    // made again from the current state.
    const last = this.last();
    for (const seq of this.seqs()) if (!last || seq > last.seq) this.state.remove(fileOf(seq));
  }

  last(): Last | undefined {
    return this.state.readJson<Last>("snapshot.json");
  }

  seqs(): number[] {
    return this.state
      .list("queue")
      .map((f) => Number(f.replace(/\.json$/, "")))
      .filter((n) => Number.isInteger(n) && n > 0)
      .sort((a, b) => a - b);
  }

  read(seq: number): Report | undefined {
    return this.state.readJson<Report>(fileOf(seq));
  }

  drop(seq: number): void {
    this.state.remove(fileOf(seq));
  }

  /** Queues the report that brings the server from the last queued snapshot to `snapshot`. */
  async enqueue(snapshot: Snapshot, now = new Date()): Promise<Report> {
    const last = this.last();
    const seq = (last?.seq ?? 0) + 1;
    if (!last || this.seqs().length >= MAX_QUEUED) return this.enqueueFull(snapshot, seq, now);
    const report = deltaReport(seq, last.snapshot, snapshot, now);
    return this.write(report, snapshot);
  }

  /** Replaces the whole queue with one full report numbered at least `minSeq`. */
  async enqueueFull(snapshot: Snapshot, minSeq: number, now = new Date()): Promise<Report> {
    const seq = Math.max(minSeq, (this.last()?.seq ?? 0) + 1);
    for (const s of this.seqs()) this.state.remove(fileOf(s));
    return this.write(fullReport(seq, snapshot, now), snapshot);
  }

  private async write(report: Report, snapshot: Snapshot): Promise<Report> {
    await this.state.writeJson(fileOf(report.seq), report);
    await this.state.writeJson("snapshot.json", { seq: report.seq, snapshot } satisfies Last);
    return report;
  }

  /** The server committed everything up to `seq`. */
  async ack(seq: number): Promise<void> {
    for (const s of this.seqs()) if (s <= seq) this.state.remove(fileOf(s));
    const acked = this.state.readJson<{ seq: number }>("acked.json");
    if (!acked || acked.seq < seq)
      await this.state.writeJson("acked.json", { seq, at: new Date().toISOString() });
  }

  acked(): number {
    return this.state.readJson<{ seq: number }>("acked.json")?.seq ?? 0;
  }
}
