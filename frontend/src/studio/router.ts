// A small history router: the studio has a handful of pages, addressed under /studio/.
import { useEffect, useState } from "react";

export const STUDIO_ROOT = "/studio/";

export type Route =
  | { page: "workflows" }
  | { page: "workflow"; id: string; runId?: string }
  | { page: "knowledge" }
  | { page: "knowledge-base"; id: number }
  | { page: "not-found"; path: string };

export function parseRoute(pathname: string, search = ""): Route {
  const rest = pathname.startsWith(STUDIO_ROOT) ? pathname.slice(STUDIO_ROOT.length) : null;
  if (rest === null) return { page: "not-found", path: pathname };
  const parts = rest.split("/").filter(Boolean);
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "workflows")) {
    return { page: "workflows" };
  }
  if (parts[0] === "workflows" && parts.length === 2) {
    const runId = new URLSearchParams(search).get("run") ?? undefined;
    return runId ? { page: "workflow", id: parts[1], runId } : { page: "workflow", id: parts[1] };
  }
  if (parts[0] === "knowledge" && parts.length === 1) return { page: "knowledge" };
  if (parts[0] === "knowledge" && parts.length === 2 && /^\d+$/.test(parts[1])) {
    return { page: "knowledge-base", id: Number(parts[1]) };
  }
  return { page: "not-found", path: pathname };
}

export function navigate(path: string): void {
  window.history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() =>
    parseRoute(window.location.pathname, window.location.search),
  );
  useEffect(() => {
    const update = () => setRoute(parseRoute(window.location.pathname, window.location.search));
    window.addEventListener("popstate", update);
    return () => window.removeEventListener("popstate", update);
  }, []);
  return route;
}

/** An <a> click that stays in the app (ctrl/cmd-click still opens a tab). */
export function linkHandler(path: string) {
  return (event: { preventDefault(): void; metaKey: boolean; ctrlKey: boolean }) => {
    if (event.metaKey || event.ctrlKey) return;
    event.preventDefault();
    navigate(path);
  };
}
