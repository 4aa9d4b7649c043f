// Hash routes (#/hosts, #/hosts/ID, ...): links work with the keyboard and the browser's history, and
// the server serves one page.

import { useEffect, useState } from "react";

export interface Route {
  page: string;
  id?: string;
  query: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const [path = "", q = ""] = hash.replace(/^#\/?/, "").split("?");
  const [page = "hosts", id] = path.split("/").filter(Boolean);
  return { page, ...(id ? { id: decodeURIComponent(id) } : {}), query: new URLSearchParams(q) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function go(hash: string): void {
  location.hash = hash;
}
