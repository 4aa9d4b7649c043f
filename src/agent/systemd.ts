// Running the agent as a systemd unit: the Berth image ships berth-agent.service (src/os/agent-unit.ts);
// on another Debian host enrolment writes the same unit to /etc/systemd/system. Enabling it is what
// turns the agent on: until a node is enrolled, nothing runs.

import { existsSync } from "node:fs";
import { BerthError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import { AGENT_UNIT_NAME, agentUnit } from "../os/agent-unit.ts";
import { BERTH_BIN } from "./berth-command.ts";

export async function enableAgentUnit(): Promise<string> {
  if (!existsSync("/run/systemd/system"))
    throw new BerthError("systemd is not running here: start the agent with berth agent run");
  const shipped = `/usr/lib/systemd/system/${AGENT_UNIT_NAME}`;
  let unit = shipped;
  if (!existsSync(shipped)) {
    unit = `/etc/systemd/system/${AGENT_UNIT_NAME}`;
    await writeFileAtomic(unit, agentUnit(BERTH_BIN), 0o644);
  }
  for (const args of [["daemon-reload"], ["enable", "--now", AGENT_UNIT_NAME]]) {
    const r = await run("systemctl", args);
    if (r.code !== 0)
      throw new BerthError(`systemctl ${args.join(" ")}: ${r.stderr.trim().split("\n").pop()}`);
  }
  return unit;
}
