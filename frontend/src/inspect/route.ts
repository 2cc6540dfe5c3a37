// The inspector's pages and their paths under /inspect. The server answers
// every /inspect/* path with inspect.html; the page is chosen here, from
// `location.pathname`, and links move with history.pushState.

import { useSyncExternalStore, type MouseEvent } from "react";

export const BASE = "/inspect";

export type Route =
  | { page: "list" }
  | { page: "workflow"; id: string }
  | { page: "dashboard" }
  | { page: "not-found"; path: string };

/** The page a path shows. */
export function parseRoute(pathname: string): Route {
  const trimmed = pathname.replace(/\/+$/, "");
  if (trimmed === BASE || trimmed === `${BASE}/workflows`) return { page: "list" };
  if (!trimmed.startsWith(`${BASE}/`)) return { page: "not-found", path: pathname };
  const parts = trimmed.slice(BASE.length + 1).split("/");
  if (parts.length === 1 && parts[0] === "dashboard") return { page: "dashboard" };
  if (parts.length === 2 && parts[0] === "workflows" && parts[1]) {
    let id = parts[1];
    try {
      id = decodeURIComponent(id);
    } catch {
      // keep it as it is
    }
    return { page: "workflow", id };
  }
  return { page: "not-found", path: pathname };
}

/** The path of the workflow list (with its query string, if any). */
export function listPath(search = ""): string {
  return `${BASE}${search}`;
}

export function workflowPath(id: string): string {
  return `${BASE}/workflows/${encodeURIComponent(id)}`;
}

export const DASHBOARD_PATH = `${BASE}/dashboard`;

// --- navigation -----------------------------------------------------------

const listeners = new Set<() => void>();

function notify() {
  for (const l of listeners) l();
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  if (listeners.size === 1) window.addEventListener("popstate", notify);
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0) window.removeEventListener("popstate", notify);
  };
}

const snapshot = () => window.location.pathname + window.location.search;

/** The current path and query string; re-renders when they change. */
export function useLocation(): { pathname: string; search: string } {
  const href = useSyncExternalStore(subscribe, snapshot);
  const q = href.indexOf("?");
  return q < 0 ? { pathname: href, search: "" } : { pathname: href.slice(0, q), search: href.slice(q) };
}

/** Goes to a path of this app; `replace` keeps the history entry (filters being typed). */
export function navigate(path: string, { replace = false } = {}): void {
  if (path === snapshot()) return;
  if (replace) window.history.replaceState(null, "", path);
  else window.history.pushState(null, "", path);
  notify();
  if (!replace) window.scrollTo(0, 0);
}

/** An anchor's click handler that navigates in-app (new tabs and modified clicks stay the browser's). */
export function followLink(event: MouseEvent<HTMLAnchorElement>, path: string): void {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(path);
}
