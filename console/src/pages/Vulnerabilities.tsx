// Vulnerabilities across the fleet: counts by severity over time (the history is kept by the server at
// every evaluation), and the vulnerabilities on the most hosts.

import { useEffect, useMemo, useState } from "react";
import { get, type TopVulns, type VulnHistory } from "../api.ts";
import { Chart } from "../Chart.tsx";

const SEVERITIES = ["critical", "high", "medium", "low", "negligible", "unknown"] as const;

export function Vulnerabilities() {
  const [history, setHistory] = useState<VulnHistory | undefined>();
  const [top, setTop] = useState<TopVulns | undefined>();
  useEffect(() => {
    get<VulnHistory>("/api/v1/fleet/vulnerabilities/history").then(setHistory, () => {});
    get<TopVulns>("/api/v1/fleet/vulnerabilities/top?limit=50").then(setTop, () => {});
  }, []);
  const option = useMemo(
    () => ({
      tooltip: { trigger: "axis" },
      legend: { data: SEVERITIES.map((s) => s) },
      grid: { left: 50, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "time" },
      yAxis: { type: "value", name: "findings" },
      series: SEVERITIES.map((s) => ({
        name: s,
        type: "line",
        stack: "all",
        areaStyle: {},
        showSymbol: false,
        data: (history?.points ?? []).map((p) => [p.at, p[s]]),
      })),
    }),
    [history],
  );
  const last = history?.points.at(-1);
  return (
    <section>
      <h1 tabIndex={-1}>Vulnerabilities</h1>
      <h2>By severity over time</h2>
      <Chart
        option={option}
        label={last ? `Latest: ${SEVERITIES.map((s) => `${last[s]} ${s}`).join(", ")}` : "No history yet"}
      />
      <h2>On the most hosts</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Vulnerability</th>
            <th scope="col">Severity</th>
            <th scope="col">Hosts</th>
            <th scope="col">Fix available</th>
            <th scope="col">Title</th>
          </tr>
        </thead>
        <tbody>
          {(top?.vulns ?? []).map((v) => (
            <tr key={v.vulnId}>
              <td>
                <a href={`#/hosts?cve=${encodeURIComponent(v.vulnId)}`}>{v.vulnId}</a>
              </td>
              <td>{v.severity}</td>
              <td>{v.hosts}</td>
              <td>{v.fixable ? "yes" : "no"}</td>
              <td>{v.title ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
