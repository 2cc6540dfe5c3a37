// The workflow list: filters (kept in the URL), live counts per status, and
// one page of workflows at a time.

import { useEffect, useMemo, useRef, useState } from "react";
import { getCounts, listWorkflows, type Counts } from "./api";
import { NO_FILTERS, STATUSES, filtersFromSearch, filtersToSearch, isStatus, type ListFilters } from "./filters";
import { FIRST_PAGE, currentCursor, hasPrevious, nextPage, pageNumber, previousPage } from "./paging";
import { followLink, listPath, navigate, useLocation, workflowPath } from "./route";
import { StatusBadge, When, LoadError, Loading, useResource } from "./ui";
import { absolute } from "./time";

const COUNTS_POLL_MS = 3000;
const LIST_POLL_MS = 3000;
const SEARCH_DEBOUNCE_MS = 300;

export function WorkflowList() {
  const { search } = useLocation();
  const filters = useMemo(() => filtersFromSearch(search), [search]);
  const searchKey = filtersToSearch(filters);

  useEffect(() => {
    document.title = "Workflows — floe inspector";
  }, []);

  const counts = useResource((signal) => getCounts(filters.kind, signal), [filters.kind], COUNTS_POLL_MS);

  function change(patch: Partial<ListFilters>, replace = false) {
    navigate(listPath(filtersToSearch({ ...filters, ...patch })), { replace });
  }

  return (
    <div className="stack">
      <h1 className="page-title">Workflows</h1>
      <CountsBar counts={counts.data} error={counts.error} filters={filters} onStatus={(status) => change({ status })} />
      <FilterForm filters={filters} counts={counts.data} onChange={change} />
      <Results key={searchKey} filters={filters} />
    </div>
  );
}

function CountsBar({
  counts,
  error,
  filters,
  onStatus,
}: {
  counts: Counts | undefined;
  error: string | null;
  filters: ListFilters;
  onStatus: (status: ListFilters["status"]) => void;
}) {
  const n = (v: number | undefined) => (v === undefined ? "–" : String(v));
  return (
    <section className="card" aria-labelledby="counts-heading">
      <div className="card-head">
        <h2 id="counts-heading">Counts{filters.kind ? ` for ${filters.kind}` : ""}</h2>
        <span className="muted small">live, every 3 s</span>
      </div>
      <div className="counts" role="group" aria-label="Filter by status">
        <button
          type="button"
          className="count-tile"
          aria-pressed={filters.status === ""}
          onClick={() => onStatus("")}
        >
          <span className="count-label">all</span>
          <span className="count-value" data-testid="count-total">
            {n(counts?.total)}
          </span>
        </button>
        {STATUSES.map((s) => (
          <button
            key={s}
            type="button"
            className={`count-tile count-${s}`}
            aria-pressed={filters.status === s}
            onClick={() => onStatus(filters.status === s ? "" : s)}
          >
            <span className="count-label">{s}</span>
            <span className="count-value" data-testid={`count-${s}`}>
              {n(counts?.by_status?.[s])}
            </span>
          </button>
        ))}
      </div>
      {counts && (
        <p className="muted small counts-extra">
          <span data-testid="count-overdue">{counts.overdue}</span> overdue ·{" "}
          <span data-testid="count-waiting-on-person">{counts.waiting_on_person}</span> waiting on a person
        </p>
      )}
      {error && (
        <p className="error small" role="status">
          Counts unavailable: {error}
        </p>
      )}
    </section>
  );
}

/** Options for a select: the known values, plus the current one if it is not among them. */
function options(known: readonly string[] | undefined, current: string): string[] {
  const all = new Set(known ?? []);
  if (current) all.add(current);
  return [...all].sort();
}

/** A labelled select of `choices` plus "any" (the empty value); its id is also its test id. */
function Choice(props: {
  id: string;
  label: string;
  any: string;
  value: string;
  choices: readonly string[];
  onChange: (value: string) => void;
}) {
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      <select id={props.id} data-testid={props.id} value={props.value} onChange={(e) => props.onChange(e.target.value)}>
        <option value="">{props.any}</option>
        {props.choices.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
    </div>
  );
}

function FilterForm({
  filters,
  counts,
  onChange,
}: {
  filters: ListFilters;
  counts: Counts | undefined;
  onChange: (patch: Partial<ListFilters>, replace?: boolean) => void;
}) {
  const [text, setText] = useState(filters.q);
  // The q this form last wrote to the URL: a different one came from
  // elsewhere (back button, a link) and replaces what is in the box.
  const written = useRef(filters.q);

  useEffect(() => {
    if (filters.q !== written.current) {
      written.current = filters.q;
      setText(filters.q);
    }
  }, [filters.q]);

  useEffect(() => {
    const q = text.trim();
    if (q === filters.q.trim()) return;
    const timer = setTimeout(() => {
      written.current = q;
      onChange({ q }, true);
    }, SEARCH_DEBOUNCE_MS);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [text]);

  const active = filtersToSearch({ ...filters, limit: NO_FILTERS.limit }) !== "";

  return (
    <form className="card filters" role="search" aria-label="Filter workflows" onSubmit={(e) => e.preventDefault()}>
      <div className="field">
        <label htmlFor="filter-search">Key contains</label>
        <input
          id="filter-search"
          data-testid="filter-search"
          type="search"
          value={text}
          placeholder="business key"
          autoComplete="off"
          onChange={(e) => setText(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              written.current = text.trim();
              onChange({ q: text.trim() }, true);
            }
          }}
        />
      </div>
      <Choice
        id="filter-kind"
        label="Kind"
        any="any kind"
        value={filters.kind}
        choices={options(counts?.kinds, filters.kind)}
        onChange={(kind) => onChange({ kind, state: "" })}
      />
      <Choice
        id="filter-status"
        label="Status"
        any="any status"
        value={filters.status}
        choices={STATUSES}
        onChange={(status) => onChange({ status: isStatus(status) ? status : "" })}
      />
      <Choice
        id="filter-state"
        label="State"
        any="any state"
        value={filters.state}
        choices={options(counts?.states, filters.state)}
        onChange={(state) => onChange({ state })}
      />
      <div className="checks">
        <label className="check">
          <input
            type="checkbox"
            data-testid="filter-overdue"
            checked={filters.overdue}
            onChange={(e) => onChange({ overdue: e.target.checked })}
          />
          Deadline overdue
        </label>
        <label className="check">
          <input
            type="checkbox"
            data-testid="filter-waiting"
            checked={filters.waiting}
            onChange={(e) => onChange({ waiting: e.target.checked })}
          />
          Waiting on a person
        </label>
        {active && (
          <button
            type="button"
            className="button small-button"
            onClick={() => {
              written.current = "";
              setText("");
              navigate(listPath(filtersToSearch({ ...NO_FILTERS, limit: filters.limit })));
            }}
          >
            Clear filters
          </button>
        )}
      </div>
    </form>
  );
}

function Results({ filters }: { filters: ListFilters }) {
  const [paging, setPaging] = useState(FIRST_PAGE);
  const cursor = currentCursor(paging);
  const page = useResource((signal) => listWorkflows(filters, cursor, signal), [cursor], LIST_POLL_MS);
  const rows = page.data?.items ?? [];

  return (
    <section className="card" aria-labelledby="results-heading">
      <div className="card-head">
        <h2 id="results-heading">Results</h2>
        <span className="muted small" aria-live="polite">
          page {pageNumber(paging)}
          {page.data ? ` · ${rows.length} shown` : ""}
        </span>
      </div>
      <LoadError error={page.error} what="the workflows" />
      {page.loading && !page.data ? (
        <Loading what="workflows" />
      ) : rows.length === 0 && page.data ? (
        <p className="muted">No workflows match these filters.</p>
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Workflows">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Kind</th>
                <th scope="col">State</th>
                <th scope="col">Status</th>
                <th scope="col">Deadline</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((w) => (
                <tr
                  key={w.id}
                  data-testid="workflow-row"
                  data-id={w.id}
                  data-key={w.key}
                  className="clickable"
                  onClick={() => navigate(workflowPath(w.id))}
                >
                  <td>
                    <a href={workflowPath(w.id)} onClick={(e) => followLink(e, workflowPath(w.id))} className="key">
                      {w.key}
                    </a>
                  </td>
                  <td>{w.kind}</td>
                  <td>{w.state}</td>
                  <td>
                    <StatusBadge status={w.status} />
                  </td>
                  <td title={w.deadline ? `${absolute(w.deadline)}${w.deadline_reason ? ` — ${w.deadline_reason}` : ""}` : undefined}>
                    <When t={w.deadline} />
                    {w.deadline && w.deadline_reason && <span className="muted small"> · {w.deadline_reason}</span>}
                  </td>
                  <td>
                    <When t={w.updated_at} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="pager">
        <button
          type="button"
          className="button"
          data-testid="prev-page"
          disabled={!hasPrevious(paging)}
          onClick={() => setPaging(previousPage)}
        >
          ← Previous
        </button>
        <button
          type="button"
          className="button"
          data-testid="next-page"
          disabled={!page.data?.next_cursor}
          onClick={() => setPaging((p) => nextPage(p, page.data?.next_cursor))}
        >
          Next →
        </button>
      </div>
    </section>
  );
}
