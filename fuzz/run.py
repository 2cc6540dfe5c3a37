"""Fuzzes floe's HTTP API from its own OpenAPI document (scripts/fuzz-api runs this).

1. A fresh database on the PostgreSQL server in DATABASE_URL, and the real
   target/debug/floe-api --with-worker (offline agents, no nudges) on a free port.
2. Two people sign in, A and B; each starts their onboarding and exchanges a
   message with the assistant. Once the worker is idle, B's data is read from SQL.
3. schemathesis runs over every operation with A's session, then unauthenticated.
   Checks: no 5xx; every response matches its documented status, content type,
   headers and schema; a route that declares security answers 2xx only with valid
   credentials; invalid data is refused; an undocumented method is 405 with `Allow`.
   Phases: examples, coverage (edge and invalid values), fuzzing (valid and invalid
   data), stateful (sequences of calls that reuse what earlier answers returned).
4. Once the worker is idle again, B's data is read again: any difference fails.
5. schemathesis runs over every operation once more, with the operator token.

B's data is what A's session and anonymous requests must never reach: it is
compared after those two runs. The operator may signal or cancel any workflow by
design, B's included (GET /api/workflows lists its id, and schemathesis reuses ids
it has seen), so the operator run comes last, after the comparison.

Exits non-zero on any failure; prints one summary line. Reports (JUnit, HAR) and
the server's log go to target/fuzz/. Settings (environment):
  FLOE_FUZZ_MAX_EXAMPLES       per operation, and sequences in the stateful phase (75)
  FLOE_FUZZ_RUN_DEADLINE_SECS  a schemathesis run still going then fails (150)
  FLOE_FUZZ_PHASES             schemathesis's phases (examples,coverage,fuzzing,stateful)
  FLOE_FUZZ_SEED               the generator's seed (fixed, so runs repeat)
  FLOE_FUZZ_SELF_TEST=1        B sends a message mid-run, which must fail the run
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("FLOE_FUZZ_ARTIFACTS", ROOT / "target" / "fuzz"))
API_BIN = Path(os.environ.get("FLOE_API_BIN", ROOT / "target" / "debug" / "floe-api"))
VENV_BIN = Path(sys.executable).parent
# Examples per operation (and stateful sequences): the whole script takes
# 1.5 to 2.5 minutes on 2 cores.
MAX_EXAMPLES = int(os.environ.get("FLOE_FUZZ_MAX_EXAMPLES", "75"))
# A schemathesis run that takes longer than this is stopped and fails.
RUN_DEADLINE_SECS = int(os.environ.get("FLOE_FUZZ_RUN_DEADLINE_SECS", "150"))
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    # A route that declares security answers 2xx only with valid credentials.
    "ignored_auth",
    # Invalid data (by the schema) is refused with a 4xx.
    "negative_data_rejection",
    "missing_required_header",
    # An undocumented method is 405 with an `Allow` header naming the right ones.
    "unsupported_method",
    "allow_header_conformance",
    # Stateful: what was deleted is gone, what was created can be read.
    "use_after_free",
    "ensure_resource_availability",
    # Not positive_data_acceptance: the document does not state every limit
    # (lengths in bytes, `limit` ranges, a WebSocket upgrade), so requests it
    # allows may rightly be refused.
]
# How long the worker may take to become idle.
SETTLE_SECS = 60


def log(message: str) -> None:
    print(f"fuzz: {message}", file=sys.stderr, flush=True)


def psql(url: str, sql: str) -> list[list[str]]:
    """Runs one statement; its rows as lists of strings."""
    out = subprocess.run(
        ["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-qAt", "-F", "\t", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def die_with_parent() -> None:
    """In the child before exec: the kernel kills it if this script dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(base: str, method: str, path: str, token: str | None = None, body=None):
    """One JSON request: (status, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Server:
    """floe-api --with-worker over a fresh database of its own (made at once;
    the server runs from `start` to `stop`, which also drops the database)."""

    def __init__(self, server_url: str):
        self.server_url = server_url
        self.db_name = f"floe_fuzz_{secrets.token_hex(6)}"
        psql(server_url, f"CREATE DATABASE {self.db_name}")
        parts = urllib.parse.urlsplit(server_url)
        self.db_url = urllib.parse.urlunsplit(parts._replace(path=f"/{self.db_name}"))
        self.operator_token = secrets.token_hex(24)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE__")}
        env.update(
            DATABASE_URL=self.db_url,
            FLOE__API__OPERATOR_TOKEN=self.operator_token,
            # Nothing moves B's onboarding on its own during the run.
            FLOE__CHAT__MAX_NUDGES="0",
            RUST_LOG=os.environ.get("RUST_LOG", "info"),
        )
        self.log_path = ARTIFACTS / "api.log"
        with open(self.log_path, "w") as out:
            self.process = subprocess.Popen(
                [str(API_BIN), "--with-worker", "--listen", f"127.0.0.1:{self.port}"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"floe-api exited ({self.process.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("floe-api did not become ready")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            psql(self.server_url, f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        except subprocess.CalledProcessError as e:
            log(f"could not drop {self.db_name}: {e.stderr.strip()}")

    def sql(self, statement: str) -> list[list[str]]:
        return psql(self.db_url, statement)

    def settle(self) -> None:
        """Waits until the worker has nothing left to do: no live jobs, every
        workflow's inbox applied, nothing in flight."""
        deadline = time.monotonic() + SETTLE_SECS
        while True:
            (busy,) = self.sql(
                "SELECT (SELECT count(*) FROM floe.jobs WHERE state <> 'dead')"
                " + (SELECT count(*) FROM floe.workflows"
                "    WHERE applied_seq < next_seq OR in_flight > 0)"
            )[0]
            if busy == "0":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not become idle within {SETTLE_SECS} s")
            time.sleep(0.2)


def expect(ok: bool, message: str) -> None:
    if not ok:
        raise RuntimeError(message)


def sign_in(server: Server, name: str) -> dict:
    """A person with a session, an onboarding and one exchange with the assistant."""
    status, person = request(server.base, "POST", "/api/session", body={"display_name": name})
    expect(status == 201, f"sign-in answered {status}: {person}")
    token = person["token"]
    status, body = request(server.base, "POST", "/api/workflow/start", token)
    expect(status == 202, f"start answered {status}: {body}")
    status, body = request(
        server.base,
        "POST",
        "/api/chat/message",
        token,
        {"content": f"Hi! I am {name}", "client_id": "fuzz-1"},
    )
    expect(status == 202, f"message answered {status}: {body}")
    deadline = time.monotonic() + SETTLE_SECS
    while True:
        status, page = request(server.base, "GET", "/api/chat/messages?after=0", token)
        expect(status == 200, f"messages answered {status}: {page}")
        if any(m["role"] == "assistant" and m["seq"] > body["seq"] for m in page["messages"]):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} got no reply")
        time.sleep(0.2)
    return person


def snapshot(server: Server, user_id: str) -> dict[str, list[list[str]]]:
    """Everything of one person's that the API could change, as SQL reads it."""
    u = quote(user_id)
    run = f"(SELECT run_id FROM floe.workflow_instances WHERE user_id = {u})"
    return {
        "user": server.sql(f"SELECT id, display_name, last_seq FROM floe.users WHERE id = {u}"),
        "messages": server.sql(
            "SELECT seq, role, kind, agent, content, widget, client_id, created_at"
            f" FROM floe.messages WHERE user_id = {u} ORDER BY seq"
        ),
        "inbox": server.sql(
            "SELECT id, title, due_date, tags, created_at"
            f" FROM floe.inbox_items WHERE user_id = {u} ORDER BY id"
        ),
        "onboarding link": server.sql(
            f"SELECT kind, workflow_id, run_id FROM floe.workflow_instances WHERE user_id = {u}"
        ),
        "onboarding workflow": server.sql(
            "SELECT id, state, status, context, input, output, error, deadline, version,"
            " next_seq, applied_seq, in_flight, updated_at"
            f" FROM floe.workflows WHERE id IN {run}"
        ),
        "onboarding events": server.sql(
            "SELECT (SELECT count(*) FROM floe.inbox WHERE workflow_id IN {0}),"
            " (SELECT count(*) FROM floe.history WHERE workflow_id IN {0})".format(run)
        ),
        "workflows for B": server.sql(
            "SELECT id, kind, key FROM floe.workflows"
            f" WHERE input->>'user_id' = {u} OR key LIKE '%' || {u} || '%' ORDER BY id"
        ),
        "memories": server.sql(
            "SELECT id, memory, metadata, updated_at, deleted_at"
            f" FROM floe.memories WHERE user_id = {u} ORDER BY id"
        ),
        "memory history": server.sql(f"SELECT count(*) FROM floe.memory_history WHERE user_id = {u}"),
        "sessions": server.sql(
            f"SELECT token_hash, expires_at FROM floe.sessions WHERE user_id = {u} ORDER BY token_hash"
        ),
    }


def schemathesis(server: Server, name: str, headers: list[str], extra: list[str] = ()) -> dict:
    """One schemathesis run over every operation; its counts from its reports."""
    out_dir = ARTIFACTS / name
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    command = [
        str(VENV_BIN / "schemathesis"),
        "--no-color",
        "--config-file",
        str(ROOT / "fuzz" / "schemathesis.toml"),
        "run",
        f"{server.base}/api/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        os.environ.get("FLOE_FUZZ_PHASES", "examples,coverage,fuzzing,stateful"),
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--continue-on-failure",
        "--request-timeout",
        "10",
        "--report",
        "junit,har",
        "--report-dir",
        str(out_dir),
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--seed",
        os.environ.get("FLOE_FUZZ_SEED", "20261122"),
    ]
    for header in headers:
        command += ["--header", header]
    command += extra
    log(f"schemathesis as {name} (output in {out_dir}/output.txt)")
    started = time.monotonic()
    with open(out_dir / "output.txt", "w") as out:
        try:
            # In its own directory: it keeps a cache of failing cases there.
            code = subprocess.run(
                command,
                cwd=out_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=RUN_DEADLINE_SECS,
            ).returncode
            timed_out = False
        except subprocess.TimeoutExpired:
            code, timed_out = -1, True
    operations, failures, errors = read_junit(out_dir)
    requests = read_har(out_dir)
    result = {
        "name": name,
        "code": code,
        "timed_out": timed_out,
        "operations": operations,
        "requests": requests,
        "failures": failures,
        "errors": errors,
        "seconds": time.monotonic() - started,
    }
    if code != 0 or failures or errors or timed_out:
        tail = (out_dir / "output.txt").read_text().splitlines()[-120:]
        print("\n".join(tail), file=sys.stderr)
    log(
        f"  {name}: {operations} operations, {requests} requests, {failures} failures,"
        f" {errors} errors, exit {code}{' (deadline passed)' if timed_out else ''},"
        f" {result['seconds']:.0f} s"
    )
    return result


def read_junit(out_dir: Path) -> tuple[int, int, int]:
    operations = failures = errors = 0
    for file in out_dir.glob("junit-*.xml"):
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError:
            continue  # a run stopped at its deadline leaves it empty
        for case in root.iter("testcase"):
            # One test case per operation, and one for the stateful phase.
            operations += case.get("name") != "Stateful tests"
            failures += len(case.findall("failure"))
            errors += len(case.findall("error"))
    return operations, failures, errors


def read_har(out_dir: Path) -> int:
    total = 0
    for file in out_dir.glob("har-*.json"):
        total += len(json.loads(file.read_text())["log"]["entries"])
    return total


def diff(before: dict, after: dict) -> list[str]:
    lines = []
    for part in before:
        if before[part] != after[part]:
            lines.append(f"B's {part} changed:")
            lines += [f"  - {row}" for row in before[part] if row not in after[part]]
            lines += [f"  + {row}" for row in after[part] if row not in before[part]]
    return lines


def main() -> int:
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        log("DATABASE_URL must name a PostgreSQL server this may create a database on")
        return 2
    if not API_BIN.exists():
        log(f"{API_BIN} not found: cargo build -p floe-api first")
        return 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and its database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    server = Server(server_url)
    try:
        server.start()
        a = sign_in(server, "Alex")
        b = sign_in(server, "Blair")
        server.settle()
        before = snapshot(server, b["user_id"])
        log(f"A and B signed in and answered; B's data read ({time.monotonic() - started:.0f} s)")
        runs = [
            # A's valid bearer token first; a made-up session cookie beside it
            # changes nothing (the first live session counts, docs/api.md), which
            # ignored_auth would take for accepting the made-up one: none is made
            # up here. The anonymous run sends made-up ones alone.
            schemathesis(
                server,
                "person-a",
                [f"Authorization: Bearer {a['token']}"],
                ["--generation-with-security-parameters", "false"],
            ),
            schemathesis(server, "anonymous", []),
        ]
        if os.environ.get("FLOE_FUZZ_SELF_TEST") == "1":
            # Proves the check can fail: B's own message must show as a change.
            log("self-test: B sends a message during the run; this run must fail")
            request(server.base, "POST", "/api/chat/message", b["token"], {"content": "self-test"})
        server.settle()
        after = snapshot(server, b["user_id"])
        log(f"the worker is idle; B's data read again ({time.monotonic() - started:.0f} s)")
        # Last: the operator may signal or cancel any workflow, B's included
        # (the workflow list hands out its id, and the fuzzer reuses ids it
        # has seen), so B's data is compared before this run.
        runs.append(
            schemathesis(server, "operator", [f"Authorization: Bearer {server.operator_token}"])
        )
    finally:
        server.stop()
    changed = diff(before, after)
    for line in changed:
        print(line, file=sys.stderr)
    failures = sum(r["failures"] + r["errors"] for r in runs)
    broken = [r["name"] for r in runs if r["code"] != 0 or r["timed_out"]]
    print(
        f"fuzz: {max(r['operations'] for r in runs)} operations x {len(runs)} runs "
        f"({', '.join(r['name'] for r in runs)}), "
        f"{sum(r['requests'] for r in runs)} requests, {failures} failures, "
        f"B's data {'CHANGED' if changed else 'unchanged'} "
        f"({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    if failures or broken or changed:
        if broken:
            log(f"schemathesis failed as: {', '.join(broken)} (see {ARTIFACTS})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
