// Hardening across the fleet: the pass rate of every rule, and the average score over time.

import { useEffect, useMemo, useState } from "react";
import { get, type Hardening as Result } from "../api.ts";
import { Chart } from "../Chart.tsx";

export function Hardening() {
  const [r, setR] = useState<Result | undefined>();
  useEffect(() => {
    get<Result>("/api/v1/fleet/hardening").then(setR, () => {});
  }, []);
  const trend = useMemo(
    () => ({
      tooltip: { trigger: "axis" },
      grid: { left: 50, right: 20, top: 20, bottom: 30 },
      xAxis: { type: "time" },
      yAxis: { type: "value", min: 0, max: 100, name: "average score" },
      series: [
        { type: "line", showSymbol: false, data: (r?.history ?? []).map((h) => [h.at, h.averageScore]) },
      ],
    }),
    [r],
  );
  const worst = (r?.rules ?? []).slice(0, 20);
  const bars = useMemo(
    () => ({
      tooltip: {},
      grid: { left: 160, right: 20, top: 10, bottom: 30 },
      xAxis: { type: "value", min: 0, max: 100, name: "% of hosts passing" },
      yAxis: { type: "category", data: worst.map((x) => x.id).reverse() },
      series: [{ type: "bar", data: worst.map((x) => Math.round(x.passRate * 1000) / 10).reverse() }],
    }),
    [worst],
  );
  const last = r?.history.at(-1);
  return (
    <section>
      <h1 tabIndex={-1}>Hardening</h1>
      <p>{r ? `${r.hosts} hosts checked` : "Loading…"}</p>
      <h2>Average score over time</h2>
      <Chart
        option={trend}
        label={last ? `Latest average score ${last.averageScore.toFixed(1)}` : "No history yet"}
      />
      <h2>Rules that fail most</h2>
      <Chart
        option={bars}
        label={worst.map((x) => `${x.id} ${Math.round(x.passRate * 100)}%`).join(", ") || "None"}
      />
      <table>
        <thead>
          <tr>
            <th scope="col">Rule</th>
            <th scope="col">Hosts failing</th>
            <th scope="col">Pass rate</th>
          </tr>
        </thead>
        <tbody>
          {(r?.rules ?? []).map((x) => (
            <tr key={x.id}>
              <td>{x.id}</td>
              <td>{x.failing}</td>
              <td>{(x.passRate * 100).toFixed(1)}%</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
