// Advisories (Berth's BSAs, Debian's DSAs and DLAs) that name vulnerabilities found in the fleet.

import { useEffect, useState } from "react";
import { get, type Advisories as Result } from "../api.ts";

export function Advisories() {
  const [r, setR] = useState<Result | undefined>();
  useEffect(() => {
    get<Result>("/api/v1/fleet/advisories").then(setR, () => {});
  }, []);
  return (
    <section>
      <h1 tabIndex={-1}>Advisories</h1>
      {r && !r.advisories.length && <p>No advisory names a vulnerability found in the fleet.</p>}
      <table>
        <thead>
          <tr>
            <th scope="col">Advisory</th>
            <th scope="col">Severity</th>
            <th scope="col">Hosts</th>
            <th scope="col">Vulnerabilities</th>
          </tr>
        </thead>
        <tbody>
          {(r?.advisories ?? []).map((a) => (
            <tr key={a.id}>
              <td>{a.id}</td>
              <td>{a.severity}</td>
              <td>{a.hosts}</td>
              <td>
                {a.vulns.map((v) => (
                  <a key={v} href={`#/hosts?cve=${encodeURIComponent(v)}`} className="tag">
                    {v}
                  </a>
                ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
