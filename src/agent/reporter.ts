// Sending the report queue: in order, each entry until the server acknowledges it. A 409 says which seq
// the server needs next: entries it already has are dropped, and when it lacks the base of what is
// queued, the queue becomes one full report. Shared by the agent and the simulator.

import { BerthError } from "../common/errors.ts";
import type { Job, ReportAck, ReportConflict } from "../server/api-schemas.ts";
import type { FleetClient } from "./client.ts";
import type { ReportQueue } from "./queue.ts";

export interface Sent {
  /** Jobs the last acknowledgement carried. */
  jobs: Job[];
  /** The interval the server asks for, when it said. */
  interval?: number;
  reports: number;
}

export async function sendQueue(
  client: FleetClient,
  queue: ReportQueue,
  log: (line: string) => void = () => {},
): Promise<Sent> {
  const out: Sent = { jobs: [], reports: 0 };
  let refused = 0;
  for (let guard = 0; guard < 10_000; guard++) {
    const seq = queue.seqs()[0];
    if (seq === undefined) return out;
    const report = queue.read(seq);
    if (!report) {
      queue.drop(seq);
      continue;
    }
    const a = await client.request<ReportAck & ReportConflict & { error?: string }>(
      "POST",
      "/api/v1/agent/reports",
      report,
    );
    out.reports++;
    if (a.status === 200) {
      await queue.ack(a.body.ack);
      out.jobs = a.body.jobs;
      out.interval = a.body.interval;
      continue;
    }
    if (a.status === 409) {
      const expected = a.body.expected;
      await queue.ack(expected - 1);
      if (a.body.full || queue.seqs()[0] !== expected) {
        const last = queue.last();
        if (!last) return out;
        log(`the server needs report ${expected}${a.body.full ? " in full" : ""}: sending a full report`);
        await queue.enqueueFull(last.snapshot, expected);
      }
      continue;
    }
    if (a.status === 401 || a.status === 403)
      throw new BerthError(`the server refused this node (${a.status}): ${a.body?.error ?? ""}`);
    // 400 or 413: this report can never be accepted; a full report replaces the queue, once.
    if (++refused > 2)
      throw new BerthError(`the server keeps refusing reports: ${a.body?.error ?? a.status}`);
    log(`report ${seq} refused (${a.status}: ${a.body?.error ?? ""}): sending a full report`);
    const last = queue.last();
    if (!last) return out;
    await queue.enqueueFull(last.snapshot, seq + 1);
  }
  return out;
}
