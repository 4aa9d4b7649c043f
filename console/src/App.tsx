// The console's frame: sign-in, the navigation, and the page the hash names. Every control is a link,
// a button or a form field, so the whole console works from the keyboard.

import { type FormEvent, useCallback, useEffect, useRef, useState } from "react";
import { ApiError, call, get, type Whoami } from "./api.ts";
import { Advisories } from "./pages/Advisories.tsx";
import { Hardening } from "./pages/Hardening.tsx";
import { HostDetail } from "./pages/HostDetail.tsx";
import { Hosts } from "./pages/Hosts.tsx";
import { Rollouts } from "./pages/Rollouts.tsx";
import { Software } from "./pages/Software.tsx";
import { Vulnerabilities } from "./pages/Vulnerabilities.tsx";
import { useRoute } from "./route.ts";

const PAGES: [string, string][] = [
  ["hosts", "Hosts"],
  ["vulnerabilities", "Vulnerabilities"],
  ["software", "Software"],
  ["hardening", "Hardening"],
  ["rollouts", "Rollouts"],
  ["advisories", "Advisories"],
];

function Login(props: { onLogin: (w: Whoami) => void }) {
  const [error, setError] = useState("");
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    try {
      props.onLogin(
        await call<Whoami>("POST", "/api/v1/session", { name: f.get("name"), password: f.get("password") }),
      );
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };
  return (
    <main className="login">
      <h1>Berth fleet</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <label>
          Name <input ref={first} name="name" autoComplete="username" required />
        </label>
        <label>
          Password <input name="password" type="password" autoComplete="current-password" required />
        </label>
        <button type="submit">Sign in</button>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

export function App() {
  const [me, setMe] = useState<Whoami | null | undefined>(undefined);
  const route = useRoute();
  useEffect(() => {
    get<Whoami>("/api/v1/whoami").then(setMe, () => setMe(null));
  }, []);
  const logout = useCallback(async () => {
    await call("DELETE", "/api/v1/session").catch(() => {});
    setMe(null);
  }, []);
  const main = useRef<HTMLElement>(null);
  // A new page takes the focus to its heading, as a page load would.
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs when the page changes, reads the DOM
  useEffect(() => {
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [route.page, route.id]);
  if (me === undefined) return <p className="loading">Loading…</p>;
  if (me === null) return <Login onLogin={setMe} />;
  const admin = me.role === "admin";
  const page = route.page;
  return (
    <>
      <button type="button" className="skip" onClick={() => main.current?.focus()}>
        Skip to content
      </button>
      <header>
        <span className="brand">Berth fleet</span>
        <nav aria-label="Console">
          {PAGES.map(([id, label]) => (
            <a key={id} href={`#/${id}`} aria-current={page === id ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span className="me">
          {me.name} ({me.role}){" "}
          <button type="button" onClick={logout}>
            Sign out
          </button>
        </span>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {page === "hosts" && !route.id && <Hosts query={route.query} />}
        {page === "hosts" && route.id && <HostDetail id={route.id} admin={admin} />}
        {page === "vulnerabilities" && <Vulnerabilities />}
        {page === "software" && <Software query={route.query} />}
        {page === "hardening" && <Hardening />}
        {page === "rollouts" && <Rollouts admin={admin} />}
        {page === "advisories" && <Advisories />}
      </main>
    </>
  );
}
