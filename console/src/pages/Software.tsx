// Software search: which versions of a package the fleet runs, and on how many hosts ("which hosts run
// openssl older than X").

import type { FormEvent } from "react";
import { useEffect, useState } from "react";
import { get, qs, type Software as Result } from "../api.ts";
import { go } from "../route.ts";

export function Software(props: { query: URLSearchParams }) {
  const name = props.query.get("name") ?? "";
  const below = props.query.get("versionBelow") ?? "";
  const [r, setR] = useState<Result | undefined>();
  const [error, setError] = useState("");
  useEffect(() => {
    if (!name) return setR(undefined);
    get<Result>(`/api/v1/fleet/software${qs({ name, versionBelow: below })}`).then(setR, (e: Error) =>
      setError(e.message),
    );
  }, [name, below]);
  const search = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    go(
      `#/software${qs({ name: String(f.get("name") ?? "").trim(), versionBelow: String(f.get("versionBelow") ?? "").trim() })}`,
    );
  };
  const hosts = (r?.versions ?? []).reduce((s, v) => s + v.hosts, 0);
  return (
    <section>
      <h1 tabIndex={-1}>Software</h1>
      <form className="filters" onSubmit={search} aria-label="Search software" key={`${name} ${below}`}>
        <label>
          Package <input name="name" defaultValue={name} required placeholder="openssl" />
        </label>
        <label>
          older than <input name="versionBelow" defaultValue={below} placeholder="3.0.15-1~deb12u1" />
        </label>
        <button type="submit">Search</button>
      </form>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {r && (
        <>
          <p aria-live="polite">
            {r.versions.length} version{r.versions.length === 1 ? "" : "s"} on {hosts} host
            {hosts === 1 ? "" : "s"}{" "}
            <a href={`#/hosts${qs({ package: name, versionBelow: below })}`}>show the hosts</a>
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Package</th>
                <th scope="col">Version</th>
                <th scope="col">Hosts</th>
              </tr>
            </thead>
            <tbody>
              {r.versions.map((v) => (
                <tr key={v.version}>
                  <td>{v.name}</td>
                  <td>{v.version}</td>
                  <td>{v.hosts}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
