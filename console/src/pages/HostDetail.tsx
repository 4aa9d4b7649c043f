// One host: what it runs (packages, containers), what affects it (findings), its hardening failures,
// and its patch and update history (the jobs it was given), with work to give it.

import { type FormEvent, useCallback, useEffect, useState } from "react";
import { get, type NodeDetail, post } from "../api.ts";

const KINDS = [
  "rescan",
  "update-apply",
  "update-rollback",
  "patch-apply",
  "patch-rollback",
  "harden-apply",
  "harden-rollback",
];

export function HostDetail(props: { id: string; admin: boolean }) {
  const [d, setD] = useState<NodeDetail | undefined>();
  const [error, setError] = useState("");
  const [filter, setFilter] = useState("");
  const [note, setNote] = useState("");
  const load = useCallback(() => {
    get<NodeDetail>(`/api/v1/nodes/${encodeURIComponent(props.id)}/detail`).then(setD, (e: Error) =>
      setError(e.message),
    );
  }, [props.id]);
  useEffect(load, [load]);
  const give = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const params: Record<string, string> = {};
    for (const k of ["version", "name"]) {
      const v = String(f.get(k) ?? "").trim();
      if (v) params[k] = v;
    }
    try {
      const r = await post<{ id: string }>(`/api/v1/nodes/${encodeURIComponent(props.id)}/jobs`, {
        kind: f.get("kind"),
        params,
      });
      setNote(`job ${r.id} queued`);
      load();
    } catch (err) {
      setNote((err as Error).message);
    }
  };
  if (error)
    return (
      <p role="alert" className="error">
        {error}
      </p>
    );
  if (!d) return <p>Loading…</p>;
  const n = d.node;
  const pk = d.packages.filter((p) => !filter || p.name.includes(filter));
  return (
    <section>
      <h1 tabIndex={-1}>{n.hostname}</h1>
      <dl className="facts">
        <dt>State</dt>
        <dd>
          {n.online ? "online" : "offline"}, last seen {n.lastSeen ?? "never"}
        </dd>
        <dt>Release</dt>
        <dd>{n.release ?? "unknown"}</dd>
        <dt>Kernel</dt>
        <dd>{n.kernel ?? "unknown"}</dd>
        <dt>Update</dt>
        <dd>
          {n.update.state}
          {n.update.booted ? `, booted from slot ${n.update.booted}` : ""}
          {n.update.reason ? ` (${n.update.reason})` : ""}
        </dd>
        <dt>Hardening</dt>
        <dd>
          {n.harden
            ? `${n.harden.score}/100 (${n.harden.profile}), ${n.harden.failing} rules failing`
            : "not checked"}
        </dd>
        <dt>Findings</dt>
        <dd>
          {n.findings.total} ({n.findings.critical} critical, {n.findings.high} high)
        </dd>
        <dt>Node id</dt>
        <dd>
          <code>{n.id}</code>
        </dd>
      </dl>

      {props.admin && (
        <form className="filters" onSubmit={give} aria-label="Give this host work">
          <label>
            Work
            <select name="kind">
              {KINDS.map((k) => (
                <option key={k}>{k}</option>
              ))}
            </select>
          </label>
          <label>
            Version <input name="version" />
          </label>
          <label>
            Patch or profile <input name="name" />
          </label>
          <button type="submit">Queue</button>
          <span aria-live="polite">{note}</span>
        </form>
      )}

      <h2>Findings ({d.findings.length})</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Vulnerability</th>
            <th scope="col">Severity</th>
            <th scope="col">Package</th>
            <th scope="col">Installed</th>
            <th scope="col">Fixed in</th>
          </tr>
        </thead>
        <tbody>
          {d.findings.map((f) => (
            <tr key={`${f.vulnId} ${f.package}`}>
              <td>
                <a href={`#/hosts?cve=${encodeURIComponent(f.vulnId)}`} title={f.title}>
                  {f.vulnId}
                </a>
              </td>
              <td>{f.severity}</td>
              <td>{f.package}</td>
              <td>{f.installed}</td>
              <td>{f.fixedVersion ?? f.status}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Hardening failures ({d.hardenFailing.length})</h2>
      <ul className="tags">
        {d.hardenFailing.map((r) => (
          <li key={r}>{r}</li>
        ))}
      </ul>

      <h2>Containers ({d.containers.length})</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Image</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          {d.containers.map((c) => (
            <tr key={c.id}>
              <td>{c.name}</td>
              <td>{c.image}</td>
              <td>{c.state}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Patches and updates</h2>
      <ul>
        {n.patches.map((p) => (
          <li key={`${p.kind}:${p.name}`}>
            {p.kind} patch {p.name} {p.detail ?? ""}
          </li>
        ))}
      </ul>
      <table>
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Work</th>
            <th scope="col">State</th>
            <th scope="col">Updated</th>
            <th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          {d.jobs.map((j) => (
            <tr key={j.id}>
              <td>
                <code>{j.id.slice(0, 8)}</code>
              </td>
              <td>
                {j.kind} {j.params.version ?? j.params.name ?? ""}
              </td>
              <td>{j.state}</td>
              <td>{j.updatedAt}</td>
              <td>{j.error ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h2>Packages ({d.packages.length})</h2>
      <label>
        Find a package <input value={filter} onChange={(e) => setFilter(e.target.value)} />
      </label>
      <table>
        <thead>
          <tr>
            <th scope="col">Package</th>
            <th scope="col">Version</th>
            <th scope="col">Architecture</th>
            <th scope="col">Source</th>
          </tr>
        </thead>
        <tbody>
          {pk.slice(0, 500).map((p) => (
            <tr key={`${p.name}:${p.architecture}`}>
              <td>{p.name}</td>
              <td>{p.version}</td>
              <td>{p.architecture}</td>
              <td>{p.source}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {pk.length > 500 && <p>{pk.length - 500} more: narrow the search.</p>}
    </section>
  );
}
