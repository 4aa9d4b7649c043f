// The fleet agent's systemd unit, shipped in berth-base and written by `berth agent enroll --enable` on
// other Debian hosts. It does nothing until the node is enrolled: enrolment writes the identity the
// condition looks for, and enables the unit.

export const AGENT_UNIT_NAME = "berth-agent.service";
export const AGENT_STATE_DIR = "/var/lib/berth/agent";

export function agentUnit(berth = "/usr/bin/berth"): string {
  return `[Unit]
Description=Berth: fleet agent (reports to the fleet server; enabled by berth agent enroll)
Wants=network-online.target
After=network-online.target docker.service containerd.service
ConditionPathExists=${AGENT_STATE_DIR}/node.json

[Service]
Type=simple
# Root: the agent carries out updates, live patches and hardening with the berth commands.
ExecStart=${berth} agent run --state-dir ${AGENT_STATE_DIR}
Restart=always
RestartSec=10
Environment=BERTH_PROGRESS=none

[Install]
WantedBy=multi-user.target
`;
}
