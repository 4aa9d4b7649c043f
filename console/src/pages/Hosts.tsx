// The hosts list: filters (online, release, kernel, vulnerable to a CVE, hardening score below a value,
// a live patch, a package older than a version), paged from the server by cursor, never all at once.

import { type FormEvent, useEffect, useState } from "react";
import { get, type NodePage, qs } from "../api.ts";
import { go } from "../route.ts";

const FILTERS = [
  "search",
  "online",
  "release",
  "kernel",
  "cve",
  "scoreBelow",
  "patch",
  "package",
  "versionBelow",
] as const;

export function Hosts(props: { query: URLSearchParams }) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, props.query.get(f) ?? ""])) as Record<
    (typeof FILTERS)[number],
    string
  >;
  const key = FILTERS.map((f) => filters[f]).join("\u0000");
  // The page's cursors belong to one set of filters; new filters start again at the first page.
  const [pager, setPager] = useState<{ key: string; cursors: string[] }>({ key, cursors: [] });
  const cursors = pager.key === key ? pager.cursors : [];
  const setCursors = (c: string[]) => setPager({ key, cursors: c });
  const [page, setPage] = useState<NodePage | undefined>();
  const [error, setError] = useState("");
  const path = `/api/v1/nodes${qs({ ...filters, limit: 50, cursor: cursors.at(-1) })}`;
  useEffect(() => {
    setError("");
    get<NodePage>(path).then(setPage, (e: Error) => setError(e.message));
  }, [path]);
  const apply = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const q: Record<string, string> = {};
    for (const k of FILTERS) {
      const v = String(f.get(k) ?? "").trim();
      if (v) q[k] = v;
    }
    go(`#/hosts${qs(q)}`);
  };
  return (
    <section>
      <h1 tabIndex={-1}>Hosts</h1>
      <form className="filters" onSubmit={apply} aria-label="Filter hosts" key={key}>
        <label>
          Hostname <input name="search" defaultValue={filters.search} />
        </label>
        <label>
          State
          <select name="online" defaultValue={filters.online}>
            <option value="">any</option>
            <option value="true">online</option>
            <option value="false">offline</option>
          </select>
        </label>
        <label>
          Release <input name="release" defaultValue={filters.release} />
        </label>
        <label>
          Kernel <input name="kernel" defaultValue={filters.kernel} />
        </label>
        <label>
          Vulnerable to <input name="cve" defaultValue={filters.cve} placeholder="CVE-2024-6387" />
        </label>
        <label>
          Score below{" "}
          <input name="scoreBelow" type="number" min={0} max={101} defaultValue={filters.scoreBelow} />
        </label>
        <label>
          Live patch <input name="patch" defaultValue={filters.patch} />
        </label>
        <label>
          Package <input name="package" defaultValue={filters.package} />
        </label>
        <label>
          older than <input name="versionBelow" defaultValue={filters.versionBelow} />
        </label>
        <button type="submit">Filter</button>
        <button type="button" onClick={() => go("#/hosts")}>
          Clear
        </button>
      </form>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {page && (
        <>
          <p aria-live="polite" className="count">
            {page.total} host{page.total === 1 ? "" : "s"}
            {cursors.length ? `, page ${cursors.length + 1}` : ""}
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">State</th>
                <th scope="col">Release</th>
                <th scope="col">Kernel</th>
                <th scope="col">Critical</th>
                <th scope="col">High</th>
                <th scope="col">All findings</th>
                <th scope="col">Score</th>
                <th scope="col">Containers</th>
                <th scope="col">Update</th>
              </tr>
            </thead>
            <tbody>
              {page.nodes.map((n) => (
                <tr key={n.id}>
                  <td>
                    <a href={`#/hosts/${encodeURIComponent(n.id)}`}>{n.hostname}</a>
                  </td>
                  <td>{n.online ? "online" : "offline"}</td>
                  <td>{n.release ?? ""}</td>
                  <td>{n.kernel ?? ""}</td>
                  <td className={n.findings.critical ? "bad" : ""}>{n.findings.critical}</td>
                  <td>{n.findings.high}</td>
                  <td>{n.findings.total}</td>
                  <td>{n.harden?.score ?? ""}</td>
                  <td>{n.containers}</td>
                  <td>{n.update.state}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="pager">
            <button type="button" disabled={!cursors.length} onClick={() => setCursors(cursors.slice(0, -1))}>
              Previous page
            </button>
            <button
              type="button"
              disabled={!page.next}
              onClick={() => page.next && setCursors([...cursors, page.next])}
            >
              Next page
            </button>
          </div>
        </>
      )}
    </section>
  );
}
