// Pieces every inspector page uses: data loading with polling, a ticking
// clock for relative times, status badges, JSON and time displays.

import { useCallback, useEffect, useRef, useState, useSyncExternalStore, type ReactNode } from "react";
import { errorMessage, isAbort } from "./api";
import { prettyJson } from "./format";
import { absolute, relative } from "./time";

export interface Resource<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `load` when `deps` change, again on `reload()`, and every `pollMs`
 * if given. Keeps the last good data when a later load fails.
 */
export function useResource<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: readonly unknown[],
  pollMs?: number,
): Resource<T> {
  const [state, setState] = useState<{ data: T | undefined; error: string | null; loading: boolean }>({
    data: undefined,
    error: null,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const lastDeps = useRef<readonly unknown[]>(deps);

  useEffect(() => {
    // New deps: what was shown belongs to the old ones.
    const changed = deps.length !== lastDeps.current.length || deps.some((d, i) => !Object.is(d, lastDeps.current[i]));
    if (changed) {
      lastDeps.current = deps;
      setState({ data: undefined, error: null, loading: true });
    }
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const data = await loadRef.current(controller.signal);
        if (!controller.signal.aborted) setState({ data, error: null, loading: false });
      } catch (e) {
        if (controller.signal.aborted || isAbort(e)) return;
        setState((s) => ({ data: s.data, error: errorMessage(e), loading: false }));
      }
      if (pollMs && !controller.signal.aborted) timer = setTimeout(run, pollMs);
    };
    void run();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick, pollMs]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

// --- a shared clock ---------------------------------------------------------

let now = Date.now();
const clockListeners = new Set<() => void>();
let clockTimer: ReturnType<typeof setInterval> | undefined;

function subscribeClock(listener: () => void): () => void {
  clockListeners.add(listener);
  if (!clockTimer) {
    now = Date.now();
    clockTimer = setInterval(() => {
      now = Date.now();
      for (const l of clockListeners) l();
    }, 1000);
  }
  return () => {
    clockListeners.delete(listener);
    if (clockListeners.size === 0) {
      clearInterval(clockTimer);
      clockTimer = undefined;
    }
  };
}

/** The time now, updated every second. */
export function useNow(): number {
  return useSyncExternalStore(subscribeClock, () => now);
}

// --- displays ---------------------------------------------------------------

/** A time as "in 3 min" / "2 h ago", the exact local time in its title. */
export function When({ t, empty = "–" }: { t: string | null | undefined; empty?: string }) {
  const current = useNow();
  if (!t) return <span className="muted">{empty}</span>;
  return (
    <time dateTime={t} title={absolute(t)}>
      {relative(t, current)}
    </time>
  );
}

export function StatusBadge({ status, testId }: { status: string; testId?: string }) {
  return (
    <span className={`badge badge-${status}`} data-testid={testId}>
      {status}
    </span>
  );
}

export function Json({ value, testId, label }: { value: unknown; testId?: string; label?: string }) {
  return (
    <pre className="json" data-testid={testId} aria-label={label} tabIndex={0}>
      {prettyJson(value)}
    </pre>
  );
}

/** An error from loading, shown where the data would be. */
export function LoadError({ error, what }: { error: string | null; what: string }) {
  if (!error) return null;
  return (
    <p className="error" role="alert">
      Can't load {what}: {error}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}

/** A panel with a heading. */
export function Card({
  title,
  id,
  actions,
  children,
  testId,
}: {
  title: string;
  id?: string;
  actions?: ReactNode;
  children: ReactNode;
  testId?: string;
}) {
  const headingId = id ? `${id}-heading` : undefined;
  return (
    <section className="card" id={id} aria-labelledby={headingId} data-testid={testId}>
      <div className="card-head">
        <h2 id={headingId}>{title}</h2>
        {actions}
      </div>
      {children}
    </section>
  );
}
