"""Benchmarks: the chat server side by side with its references, in one run.

    .venv/bin/python bench/run.py            # full (make bench), ~15 minutes
    .venv/bin/python bench/run.py --quick    # ~2 minutes (make bench-quick)
    .venv/bin/python bench/run.py --profile  # also py-spy the hot path of a send
    .venv/bin/python bench/run.py --quick --only saturation,fanout --server both
                                             # the chat server on uvicorn and on daphne, same run

Needs PostgreSQL at 127.0.0.1:5432 (role root, trust) and Redis at
127.0.0.1:6379. Uses its own databases `bench_chat` and `bench_tutorial`
(created when missing) and Redis database 15, never the dev or test ones.

Servers run pinned to CPU 1 and the load generator (and pgbench) to CPU 0
where `taskset` exists. Each figure is compared with its reference measured
in the same run. Prints a Markdown table and writes JSON to bench/results/.
Every server is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
PY = sys.executable
BIN = Path(PY).parent

# The ASGI servers the chat server can run on. The first is the one `make run`
# uses and the default here; `--server both` measures each, back to back, in
# every chat scenario, so the comparison lands in one run on the same code.
SERVERS = ("uvicorn", "daphne")
# uvicorn with one option changed from config/serve.py, to measure an
# alternative the same way (`--server uvicorn,uvicorn-wsproto`).
UVICORN_VARIANTS = {
    "uvicorn-wsproto": ["--ws", "wsproto"],
    # The load generator offers permessage-deflate to this one, as browsers do.
    "uvicorn-deflate": ["--ws-per-message-deflate", "true"],
}

PG = "postgres://root@127.0.0.1:5432"
CHAT_DB = "bench_chat"
TUTORIAL_DB = "bench_tutorial"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
SERVER_CPU = ["taskset", "-c", "1"] if PIN else []
CLIENT_CPU = ["taskset", "-c", "0"] if PIN else []

QUICK = {
    "duration": 3.0,
    "drain": 2.0,
    "sat_duration": 3.0,
    "pgbench_seconds": 3,
    "idle": 1000,
    "history": 100_000,
    "history_requests": 20,
    "profile_seconds": 5.0,
    "huge_listeners": 1000,
}
FULL = {
    "duration": 20.0,
    "drain": 10.0,
    "sat_duration": 20.0,
    "pgbench_seconds": 15,
    "idle": 10_000,
    "history": 1_000_000,
    "history_requests": 100,
    "profile_seconds": 15.0,
    "huge_listeners": 1000,
}

# The chat server's code: this checkout, or another (--app-dir), e.g. a
# `git archive` of an older commit, to measure before and after a change.
APP = Path(os.environ.get("BENCH_APP_DIR") or ROOT).resolve()
# Which ASGI servers serve it (--server): the first is reported as "chat".
CHAT_SERVERS: list[str] = [SERVERS[0]]

_running: list[subprocess.Popen[bytes]] = []
SERVER_ERRORS: list[dict[str, Any]] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    if proc in _running:
        _running.remove(proc)


def stop_all() -> None:
    for proc in list(_running):
        stop(proc)


@contextlib.contextmanager
def server(name: str, cmd: list[str], env: dict[str, str], port: int, cwd: Path = ROOT) -> Iterator[int]:
    """Start a server pinned to the server CPU, wait for its port, yield its pid, stop it."""
    LOGS.mkdir(parents=True, exist_ok=True)
    logpath = LOGS / f"{name}.log"
    logfile = logpath.open("ab")
    offset = logfile.tell()
    proc = subprocess.Popen(
        SERVER_CPU + cmd,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
    )
    _running.append(proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {LOGS / (name + '.log')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on {port} within 60 s")
            time.sleep(0.1)
        yield proc.pid
    finally:
        stop(proc)
        logfile.close()
        SERVER_ERRORS.append(log_errors(name, logpath, offset))


def log_errors(name: str, path: Path, offset: int) -> dict[str, Any]:
    """Exceptions the server logged while it ran: how many, and the commonest."""
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    kinds = Counter(
        line.strip()[:160]
        for line in text.splitlines()
        if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line.strip()) and not line.startswith(" ")
    )
    return {"server": name, "tracebacks": text.count("Traceback (most recent call last)"), "top": kinds.most_common(3)}


def server_errors() -> dict[str, Any]:
    """The last stopped server's logged exceptions (attached to the scenario's figures)."""
    return SERVER_ERRORS[-1] if SERVER_ERRORS else {}


def chat_env() -> dict[str, str]:
    return {
        "DATABASE_URL": f"{PG}/{CHAT_DB}",
        "REDIS_URL": REDIS_URL,
        "CHAT_RATE_LIMIT": "off",
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "BENCH_APP_DIR": str(APP),
    }


def uvicorn_options() -> list[str]:
    """uvicorn's options as `make run` and production use them: config/serve.py of this checkout.

    Imported from here rather than run as `python -m config.serve` so that an
    older checkout (--app-dir) without that module is served the same way.
    """
    sys.path.insert(0, str(ROOT))
    try:
        from config.serve import OPTIONS
    finally:
        sys.path.remove(str(ROOT))
    return list(OPTIONS)


def chat_command(kind: str, port: int) -> list[str]:
    # No access log on either (daphne's -v 0): one line per handshake is not the work measured.
    if kind.startswith("uvicorn"):
        return [
            *[str(BIN / "uvicorn"), *uvicorn_options(), *UVICORN_VARIANTS.get(kind, [])],
            *["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
            "config.asgi:application",
        ]
    return [str(BIN / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]


def chat_server(port: int, kind: str | None = None) -> contextlib.AbstractContextManager[int]:
    kind = kind or CHAT_SERVERS[0]
    return server(f"chat-{kind}", chat_command(kind, port), chat_env(), port, cwd=APP)


def chat_keys() -> list[tuple[str, str]]:
    """(result key, server) for each server under test: "chat" for the first, "chat_<server>" for the others."""
    return [("chat" if i == 0 else f"chat_{kind}", kind) for i, kind in enumerate(CHAT_SERVERS)]


def client_options(kind: str) -> dict[str, Any]:
    """Load generator settings that depend on the server: permessage-deflate only where it is measured."""
    return {"compression": "deflate" if kind == "uvicorn-deflate" else None}


def chat_client_config(
    cfg: dict[str, Any], kind: str, port: int, pid: int, setup_data: dict[str, Any]
) -> dict[str, Any]:
    """A scenario's load generator settings aimed at the chat server on `kind` (one place for every scenario)."""
    return {
        **cfg,
        **client_options(kind),
        "protocol": "chat",
        "url": f"ws://127.0.0.1:{port}",
        "tokens": setup_data["tokens"],
        "server_pid": pid,
    }


def tutorial_server(port: int, conn_max_age: int = 0) -> contextlib.AbstractContextManager[int]:
    cmd = [str(BIN / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", str(port), "tutorial_site.asgi:application"]
    env = {
        "TUTORIAL_DATABASE_URL": f"{PG}/{TUTORIAL_DB}",
        "REDIS_URL": REDIS_URL,
        "TUTORIAL_CONN_MAX_AGE": str(conn_max_age),
        "DJANGO_SETTINGS_MODULE": "tutorial_site.settings",
        "PYTHONPATH": str(BENCH / "tutorial"),
    }
    return server("tutorial", cmd, env, port, cwd=BENCH / "tutorial")


def bare_server(port: int) -> contextlib.AbstractContextManager[int]:
    return server("bare", [PY, str(BENCH / "servers" / "bare.py"), "--port", str(port)], {}, port)


def loadgen(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    proc = subprocess.Popen(
        [*CLIENT_CPU, PY, str(BENCH / "loadgen.py"), json.dumps({**cfg, "timeout": timeout})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _running.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        stop(proc)
        return {"error": "load generator timed out"}
    finally:
        if proc in _running:
            _running.remove(proc)
    lines = out.decode().strip().splitlines()
    if not lines:
        return {"error": f"load generator printed nothing: {err.decode()[-500:]}"}
    return dict(json.loads(lines[-1]))


# --- setup ----------------------------------------------------------------------


def psql(db: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "root", "-d", db, "-Atqc", sql], check=True, capture_output=True, text=True
    ).stdout.strip()


def ensure_database(name: str) -> None:
    if psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "root", name], check=True)


def setup(opts: dict[str, Any]) -> dict[str, Any]:
    ensure_database(CHAT_DB)
    ensure_database(TUTORIAL_DB)
    out = subprocess.run(
        [PY, str(BENCH / "setup_db.py"), json.dumps({"users": 1100, "history": opts["history"]})],
        cwd=APP,
        env={**os.environ, **chat_env()},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    subprocess.run(
        [PY, "manage.py", "migrate", "--run-syncdb", "-v", "0"],
        cwd=BENCH / "tutorial",
        env={**os.environ, "TUTORIAL_DATABASE_URL": f"{PG}/{TUTORIAL_DB}", "PYTHONPATH": str(BENCH / "tutorial")},
        check=True,
    )
    psql(TUTORIAL_DB, "TRUNCATE chat_message")
    psql(
        CHAT_DB,
        "CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, room_id int NOT NULL,"
        " body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now()); TRUNCATE bench_insert",
    )
    return data


# --- database activity sampler ------------------------------------------------------


class DbSampler:
    """Samples pg_stat_activity: how many statements run at once for a database."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.active: list[int] = []
        self.connections: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            while not self._stop.wait(0.02):
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM pg_stat_activity"
                    " WHERE datname = %s AND backend_type = 'client backend'",
                    [self.db],
                ).fetchone()
                if row:
                    self.active.append(int(row[0]))
                    self.connections.append(int(row[1]))

    def __enter__(self) -> DbSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        if not self.active:
            return {}
        return {
            "db_active_max": max(self.active),
            "db_active_mean": round(statistics.fmean(self.active), 2),
            "db_connections_max": max(self.connections),
        }


# --- scenarios --------------------------------------------------------------------------


def fanout_all(
    name: str, rooms: list[str], listeners: int, rate: float, setup_data: dict[str, Any], opts: dict
) -> dict[str, Any]:
    cfg = {
        "mode": "fanout",
        "rooms": rooms,
        "listeners": listeners,
        "rate": rate,
        "duration": opts["duration"],
        "drain": opts["drain"],
    }
    # Opening the sockets and the joins' presence storm (bounded at 60 s) come on top.
    timeout = opts["duration"] + opts["drain"] + 120 + len(rooms) * listeners / 20
    out: dict[str, Any] = {"rooms": len(rooms), "listeners": listeners, "rate": rate}
    for key, kind in chat_keys():
        port = free_port()
        log(f"{name}: chat server on {kind}")
        with chat_server(port, kind) as pid:
            out[key] = loadgen(chat_client_config(cfg, kind, port, pid, setup_data), timeout)
        out[key].update(server=kind, server_log=server_errors())
        reset_chat_rooms()
    for target, start in (("tutorial", tutorial_server), ("bare", bare_server)):
        log(f"{name}: {target}")
        port = free_port()
        with start(port) as pid:
            out[target] = loadgen(
                {**cfg, "protocol": "relay", "url": f"ws://127.0.0.1:{port}", "server_pid": pid}, timeout
            )
        out[target]["server_log"] = server_errors()
    return out


def reset_chat_rooms() -> None:
    psql(
        CHAT_DB,
        "DELETE FROM messaging_message WHERE room_id IN (SELECT id FROM rooms_room WHERE slug LIKE 'bench-fan-%'"
        " OR slug LIKE 'bench-big%' OR slug LIKE 'bench-sat-%');"
        " DELETE FROM rooms_membership WHERE room_id IN (SELECT id FROM rooms_room WHERE slug LIKE 'bench-fan-%'"
        " OR slug LIKE 'bench-big%' OR slug LIKE 'bench-sat-%');"
        " UPDATE rooms_room SET last_seq = 0 WHERE slug LIKE 'bench-fan-%' OR slug LIKE 'bench-big%'"
        " OR slug LIKE 'bench-sat-%'",
    )


def pgbench(clients: int, seconds: int) -> dict[str, Any]:
    proc = subprocess.run(
        [
            *CLIENT_CPU,
            "pgbench",
            "-n",
            "-h",
            "127.0.0.1",
            "-U",
            "root",
            "-f",
            str(BENCH / "pgbench_insert.sql"),
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
            CHAT_DB,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", proc.stdout)
    if not match:
        return {"error": (proc.stdout + proc.stderr)[-300:]}
    latency = re.search(r"latency average = ([0-9.]+) ms", proc.stdout)
    return {"tps": float(match.group(1)), "latency_avg_ms": float(latency.group(1)) if latency else None}


def saturation(setup_data: dict[str, Any], opts: dict) -> dict[str, Any]:
    cfg = {"mode": "saturate", "rooms": setup_data["sat_rooms"], "duration": opts["sat_duration"], "warmup": 1.0}
    timeout = opts["sat_duration"] + 90
    out: dict[str, Any] = {"senders": len(setup_data["sat_rooms"])}
    for key, kind in chat_keys():
        port = free_port()
        log(f"saturation: chat server on {kind}")
        with chat_server(port, kind) as pid, DbSampler(CHAT_DB) as sampler:
            out[key] = loadgen(chat_client_config(cfg, kind, port, pid, setup_data), timeout)
        out[key].update(sampler.summary(), server=kind, server_log=server_errors())
        reset_chat_rooms()
    for target, conn_max_age in (("tutorial", 0), ("tutorial_persistent", 600)):
        log(f"saturation: {target}")
        port = free_port()
        with tutorial_server(port, conn_max_age) as pid, DbSampler(TUTORIAL_DB) as sampler:
            out[target] = loadgen(
                {**cfg, "protocol": "relay", "url": f"ws://127.0.0.1:{port}", "server_pid": pid}, timeout
            )
        out[target].update(sampler.summary(), server_log=server_errors())
    log("saturation: bare")
    port = free_port()
    with bare_server(port) as pid:
        out["bare"] = loadgen({**cfg, "protocol": "relay", "url": f"ws://127.0.0.1:{port}", "server_pid": pid}, timeout)
    out["bare"]["server_log"] = server_errors()
    for clients in (1, 2):
        log(f"saturation: pgbench -c {clients}")
        out[f"pgbench_{clients}"] = pgbench(clients, opts["pgbench_seconds"])
    psql(CHAT_DB, "TRUNCATE bench_insert")
    return out


def http_get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[int, float, Any]:
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Token {token}", "Accept": "application/json"})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    return response.status, elapsed, data


def history(setup_data: dict[str, Any], opts: dict) -> dict[str, Any]:
    info = setup_data.get("history") or {}
    slug, depth = info.get("slug"), int(info.get("depth") or 0)
    middle = depth // 2
    pages = {
        "newest": f"/api/rooms/{slug}/messages/",
        "middle": f"/api/rooms/{slug}/messages/?after={middle - 1}",
        "oldest": f"/api/rooms/{slug}/messages/?after=0",
    }
    # The first seq each page must start with, to be sure we time real pages.
    first_seq = {"newest": depth - 49, "middle": middle, "oldest": 1}
    out: dict[str, Any] = {"depth": depth, "slug": slug, "filled_seconds": info.get("seconds")}
    port = free_port()
    log(f"history: {depth:,} messages")
    token = setup_data["tokens"][0]
    with chat_server(port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, _, data = http_get(conn, pages["newest"], token)
        results = data.get("results") if isinstance(data, dict) else None
        if status != 200 or not isinstance(results, list):
            conn.close()
            out["error"] = f"history API not available (GET {pages['newest']} gave HTTP {status})"
            return out
        timings: dict[str, list[float]] = {k: [] for k in pages}
        for _ in range(3):  # warm caches and connections
            for path in pages.values():
                http_get(conn, path, token)
        for _ in range(opts["history_requests"]):
            for key, path in pages.items():  # interleaved, so drift hits all three alike
                status, elapsed, data = http_get(conn, path, token)
                results = data.get("results") if isinstance(data, dict) else None
                if status != 200 or not results or results[0].get("seq") != first_seq[key]:
                    out.setdefault("bad_responses", []).append(
                        {"page": key, "status": status, "first": results[0].get("seq") if results else None}
                    )
                    continue
                timings[key].append(elapsed)
        conn.close()
    for key, values in timings.items():
        if values:
            out[key] = {
                "p50_ms": round(statistics.median(values) * 1000, 2),
                "p99_ms": round(sorted(values)[max(0, round(0.99 * (len(values) - 1)))] * 1000, 2),
                "n": len(values),
            }
    return out


def idle(setup_data: dict[str, Any], opts: dict) -> dict[str, Any]:
    count = opts["idle"]
    cfg = {"mode": "idle", "count": count, "batch": 50}
    timeout = 60 + count / 20
    out: dict[str, Any] = {"requested": count}
    for key, kind in chat_keys():
        port = free_port()
        log(f"idle: chat server on {kind}, {count} authenticated sockets")
        with chat_server(port, kind) as pid:
            out[key] = loadgen(chat_client_config(cfg, kind, port, pid, setup_data), timeout)
        out[key].update(server=kind, server_log=server_errors())
    for target, start in (("tutorial", tutorial_server), ("bare", bare_server)):
        log(f"idle: {target}, {count} sockets")
        port = free_port()
        with start(port) as pid:
            out[target] = loadgen(
                {**cfg, "protocol": "relay", "url": f"ws://127.0.0.1:{port}", "server_pid": pid}, timeout
            )
        out[target]["server_log"] = server_errors()
    return out


def profile(setup_data: dict[str, Any], opts: dict) -> dict[str, Any]:
    """py-spy the chat server under saturation and under the 10x20@20 fan-out; summarize where the time goes."""
    if not (BIN / "py-spy").exists():
        return {"error": "py-spy is not installed in the venv (pip install -r requirements/local.txt)"}
    seconds = opts["profile_seconds"]
    saturate = {"mode": "saturate", "rooms": setup_data["sat_rooms"], "duration": seconds + 2, "warmup": 1.0}
    fan = {
        "mode": "fanout",
        "rooms": setup_data["fanout_rooms"],
        "listeners": 20,
        "rate": 20,
        "duration": seconds + 2,
        "drain": 2.0,
    }
    # py-spy starts after the sockets are open (and, for fan-out, the joins settled).
    return {
        "saturation": profile_one("saturation", saturate, setup_data, seconds, delay=2.0),
        "fanout_10x20_20": profile_one("fanout", fan, setup_data, seconds, delay=4.0),
    }


def profile_one(name: str, cfg: dict[str, Any], setup_data: dict[str, Any], seconds: float, delay: float) -> dict:
    """Two py-spy recordings at once: every non-idle sample ("wall"), and only samples holding the GIL ("cpu")."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raws = {kind: RESULTS / f"profile-{name}-{kind}-{stamp}.txt" for kind in ("wall", "gil")}
    port = free_port()
    log(f"profile: py-spy on the chat server for {seconds:.0f} s of {name}")
    with chat_server(port) as pid:
        base = [*CLIENT_CPU, str(BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "200", "--nonblocking"]
        base += ["--duration", str(int(seconds)), "--threads", "--format", "raw"]

        def start_spies() -> None:
            time.sleep(delay)
            spies = [
                subprocess.Popen(
                    [*base, "--output", str(raws["wall"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                ),
                subprocess.Popen(
                    [*base, "--gil", "--output", str(raws["gil"])],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ),
            ]
            _running.extend(spies)
            for spy in spies:
                spy.wait(timeout=seconds + 30)
                _running.remove(spy)

        spy_thread = threading.Thread(target=start_spies, daemon=True)
        spy_thread.start()
        result = loadgen(
            {**cfg, "protocol": "chat", "url": f"ws://127.0.0.1:{port}", "tokens": setup_data["tokens"]}
            | {"server_pid": pid},
            seconds + 90,
        )
        spy_thread.join(timeout=seconds + 40)
    reset_chat_rooms()
    out: dict[str, Any] = {"load": result}
    for kind, raw in raws.items():
        out[kind] = summarize_profile(raw) if raw.exists() else {"error": "py-spy wrote nothing"}
        out[kind]["raw"] = str(raw.relative_to(ROOT))
    return out


# Buckets of the hot path of a send, matched on the frames of each sample.
BUCKETS = [
    ("consumer.receive -> on_send (incl. waiting for the writer)", ("on_send",)),
    ("consumer.chat_message (one delivery to one socket)", ("chat_message",)),
    ("consumer.send_frame -> the server (websocket frame out)", ("send_frame",)),
    ("psycopg (SQL round trips)", ("psycopg",)),
    ("Django ORM (query building, model init)", ("django/db/models", "django/db/backends")),
    ("transaction.on_commit -> group_send_sync (async_to_sync)", ("group_send_sync",)),
    ("channels_redis / redis client", ("channels_redis", "redis/")),
    ("asgiref sync/async hops", ("asgiref/sync.py",)),
    ("daphne / twisted / autobahn (sockets, frames)", ("twisted", "autobahn", "daphne")),
    ("uvicorn / websockets / uvloop (sockets, frames)", ("uvicorn", "websockets/", "uvloop", "wsproto")),
    ("JSON (orjson/json)", ("orjson", "json/")),
]


def summarize_profile(path: Path) -> dict[str, Any]:
    """Turn py-spy's collapsed stacks into per-thread totals and per-bucket shares."""
    per_thread: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = stack.split(";")
        per_thread[frames[0] if frames else "?"] += count
        for label, needles in BUCKETS:
            if any(n in stack for n in needles):
                buckets[label] += count
        leaves[re.sub(r"\s*\(.*?/(site-packages|lib/python3\.\d+)/", " (", frames[-1])] += count
    if not total:
        return {"error": "no samples"}

    def share(c: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(n)]

    return {
        "samples": total,
        "threads_pct": share(per_thread, 6),
        "buckets_pct_inclusive": share(buckets, len(BUCKETS)),
        "top_leaves_pct": share(leaves, 15),
    }


def probe(setup_data: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [PY, str(BENCH / "probe_send.py")],
        cwd=APP,
        env={**os.environ, **chat_env()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    reset_chat_rooms()
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"error": out.stderr[-500:]}


# --- report ------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return "-"
    return f"{a / b:.2f}x"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


Row = tuple[str, str, str, str, str, str]


def other_servers(scenario: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, results) of the chat server on the other ASGI servers measured in the same run."""
    return [
        (f"ours on {entry.get('server', key[5:])}", entry)
        for key, entry in scenario.items()
        if key.startswith("chat_") and isinstance(entry, dict)
    ]


def figure_rows(label: str, ours: Any, refs: list[tuple[str, Any]], digits: int = 1, target: str = "") -> list[Row]:
    """One figure: the first row carries our value and the target, one row per reference."""
    rows: list[Row] = []
    for i, (ref, value) in enumerate(refs):
        first = i == 0
        rows.append(
            (
                label if first else "",
                fmt(ours, digits) if first else "",
                ref,
                fmt(value, digits),
                ratio(ours, value),
                target if first else "",
            )
        )
    return rows


def table(results: dict[str, Any]) -> str:
    """The Markdown table: each figure of ours beside its references, with the issue's targets."""
    rows: list[Row] = []
    sat = results.get("saturation")
    if sat:
        chat = sat["chat"]
        acked = chat.get("acked_per_s")
        tut, pers = sat["tutorial"].get("acked_per_s"), sat["tutorial_persistent"].get("acked_per_s")
        pg2 = sat["pgbench_2"].get("tps")
        others = other_servers(sat)
        rows += figure_rows(
            "saturation, acked msgs/s (20 senders)",
            acked,
            [
                ("tutorial", tut),
                ("tutorial, persistent conns", pers),
                ("bare websockets", sat["bare"].get("acked_per_s")),
                ("pgbench insert, 1 client (TPS)", sat["pgbench_1"].get("tps")),
                ("pgbench insert, 2 clients (TPS)", pg2),
                *((label, o.get("acked_per_s")) for label, o in others),
            ],
        )
        targets = {
            "tutorial": f">= 10x: {verdict(bool(acked and tut and acked >= 10 * tut))}",
            "tutorial, persistent conns": f">= 3x: {verdict(bool(acked and pers and acked >= 3 * pers))}",
            "pgbench insert, 2 clients (TPS)": f">= 0.5x: {verdict(bool(acked and pg2 and acked >= 0.5 * pg2))}",
        }
        rows = [(*r[:5], targets.get(r[2], r[5])) for r in rows]
        rows += figure_rows(
            "saturation, ack p99 ms",
            chat.get("p99_ms"),
            [("tutorial", sat["tutorial"].get("p99_ms")), *((label, o.get("p99_ms")) for label, o in others)],
        )
        rows += figure_rows(
            "saturation, server CPU us per acked send",
            chat.get("server_us_per_ack"),
            [
                (name, sat[key].get("server_us_per_ack"))
                for name, key in (
                    ("bare", "bare"),
                    ("tutorial", "tutorial"),
                    ("tutorial, persistent", "tutorial_persistent"),
                )
            ]
            + [(label, o.get("server_us_per_ack")) for label, o in others],
            digits=0,
        )
    bare_2 = (results.get("fanout_10x20_2") or {}).get("bare", {}).get("p99_ms")
    for key in ("fanout_10x20_20", "fanout_1x200_20", "fanout_1x1000_4", "fanout_10x20_2"):
        fan = results.get(key)
        if not fan:
            continue
        label = f"fan-out {fan['rooms']}x{fan['listeners']} @ {fan['rate']:g}/s per room"
        chat = fan["chat"]
        others = other_servers(fan)
        complete = chat.get("lost") == 0 and chat.get("duplicates") == 0
        p99 = chat.get("p99_ms")
        if key == "fanout_10x20_2":
            target = f"p99 <= 3x bare: {verdict(bool(p99 is not None and bare_2 and p99 <= 3 * bare_2))}"
        elif key == "fanout_1x1000_4":
            target = f"stretch: all delivered, 0 dup, p99 < 50: {verdict(complete and (p99 or 1e9) < 50)}"
        else:
            target = f"all delivered, 0 dup, p99 < 50: {verdict(complete and (p99 or 1e9) < 50)}"
        for metric, name, digits in (
            ("deliveries_per_s", "deliveries/s", 1),
            ("p50_ms", "p50 latency ms", 1),
            ("p99_ms", "p99 latency ms", 1),
            ("max_ms", "max latency ms", 0),
        ):
            refs = [("tutorial", fan["tutorial"].get(metric)), ("bare", fan["bare"].get(metric))]
            refs += [(other, o.get(metric)) for other, o in others]
            rows += figure_rows(
                f"{label}: {name}", chat.get(metric), refs, digits, target if metric == "p99_ms" else ""
            )
        lost = "; ".join(
            f"{fmt(fan[ref].get('lost'))} / {fmt(fan[ref].get('duplicates'))}"
            for ref in ("tutorial", "bare", *(k for k in fan if k.startswith("chat_")))
        )
        rows.append(
            (
                f"{label}: undelivered after {fmt(results['options']['drain'], 0)} s drain / duplicated",
                f"{fmt(chat.get('lost'))} / {fmt(chat.get('duplicates'))}",
                "; ".join(["tutorial", "bare", *(other for other, _ in others)]),
                lost,
                "",
                "",
            )
        )
        refs = [
            ("bare", fan["bare"].get("server_us_per_delivery")),
            ("tutorial", fan["tutorial"].get("server_us_per_delivery")),
        ]
        refs += [(other, o.get("server_us_per_delivery")) for other, o in others]
        rows += figure_rows(f"{label}: server CPU us per delivery", chat.get("server_us_per_delivery"), refs, 0)
    hist = results.get("history")
    if hist:
        if "error" in hist:
            rows.append((f"history at depth {hist['depth']:,}", hist["error"], "", "", "", "MISS (not measured)"))
        else:
            newest = hist.get("newest", {}).get("p50_ms")
            for key, label in (("middle", f"seq {hist['depth'] // 2:,}"), ("oldest", "seq 1")):
                value = hist.get(key, {}).get("p50_ms")
                rows.append(
                    (
                        f"history p50 ms, page at {label} of {hist['depth']:,}",
                        fmt(value, 2),
                        "newest page",
                        fmt(newest, 2),
                        ratio(value, newest),
                        f"<= 1.5x: {verdict(bool(value and newest and value <= 1.5 * newest))}"
                        if key == "oldest"
                        else "",
                    )
                )
    idle_r = results.get("idle")
    if idle_r:
        chat = idle_r["chat"]
        others = other_servers(idle_r)
        held = chat.get("held")
        rows += figure_rows(
            "idle sockets held",
            held,
            [("tutorial", idle_r["tutorial"].get("held")), ("bare", idle_r["bare"].get("held"))]
            + [(other, o.get("held")) for other, o in others],
            target=f">= 10,000: {verdict((held or 0) >= 10_000)}",
        )
        kib = chat.get("kib_per_socket")
        rows += figure_rows(
            "idle memory KiB/socket",
            kib,
            [("tutorial", idle_r["tutorial"].get("kib_per_socket")), ("bare", idle_r["bare"].get("kib_per_socket"))]
            + [(other, o.get("kib_per_socket")) for other, o in others],
            target=f"<= 30: {verdict(kib is not None and kib <= 30)}",
        )
    logged = []
    for key in ("saturation", "fanout_10x20_20", "fanout_1x200_20", "fanout_1x1000_4", "fanout_10x20_2", "idle"):
        for chat_key, entry in (results.get(key) or {}).items():
            if chat_key == "chat" or chat_key.startswith("chat_"):
                n = (entry.get("server_log") or {}).get("tracebacks")
                if n:
                    logged.append(f"{key} ({entry.get('server', chat_key)}) {n}")
    if logged:
        rows.append(("chat server tracebacks in its log", "; ".join(logged), "", "", "", "see JSON server_log"))
    head = "| scenario | ours | reference | reference value | ours / ref | target |\n|---|---:|---|---:|---:|---|\n"
    return head + "\n".join("| " + " | ".join(r) + " |" for r in rows)


def print_profile(prof: dict[str, Any]) -> None:
    for name, entry in prof.items():
        if not isinstance(entry, dict) or "error" in entry:
            print(f"\nprofile {name}: {entry}")
            continue
        load = entry.get("load", {})
        rate = load.get("acked_per_s") or load.get("deliveries_per_s")
        print(f"\nprofile {name}: {rate}/s, server CPU {load.get('server_cpu_pct')}% of its core")
        for kind in ("wall", "gil"):
            p = entry.get(kind, {})
            print(f" {kind} ({p.get('samples')} samples; stacks in {p.get('raw')})")
            for label, pct in p.get("threads_pct", []):
                print(f"  thread {pct:5.1f}%  {label}")
            for label, pct in p.get("buckets_pct_inclusive", []):
                print(f"  incl.  {pct:5.1f}%  {label}")
            for label, pct in p.get("top_leaves_pct", [])[:8]:
                print(f"  self   {pct:5.1f}%  {label}")


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "pinned": PIN,
        "python": platform.python_version(),
        "postgres": psql("postgres", "SHOW server_version"),
        "kernel": platform.release(),
    }


def app_revision() -> dict[str, Any]:
    """Which code the chat server ran: commit and whether the work tree had changes (read-only git)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", "-C", str(APP), *cmd], capture_output=True, text=True, env=env)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    revision = git("rev-parse", "--short", "HEAD")
    if APP != ROOT and not (APP / ".git").exists():
        revision = ""
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if revision else None
    return {"dir": str(APP), "commit": revision or None, "dirty": dirty}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, short scenarios (~2 minutes)")
    parser.add_argument("--profile", action="store_true", help="also profile the chat server with py-spy")
    parser.add_argument(
        "--app-dir",
        help="serve the chat server from this checkout instead (e.g. a `git archive` of an older commit)",
    )
    parser.add_argument(
        "--server",
        default=SERVERS[0],
        help=f"ASGI server for the chat server (default {SERVERS[0]}, as `make run`): one of"
        f" {', '.join([*SERVERS, *UVICORN_VARIANTS])}, a comma-separated list, or `both` ({','.join(SERVERS)});"
        " with several, each chat scenario runs on each in turn, the first reported as ours and the others beside it",
    )
    parser.add_argument(
        "--only",
        default="saturation,fanout,history,idle,probe",
        help="comma-separated subset of: saturation,fanout,history,idle,probe,profile",
    )
    args = parser.parse_args()
    global APP
    if args.app_dir:
        APP = Path(args.app_dir).resolve()
    CHAT_SERVERS[:] = list(SERVERS) if args.server == "both" else args.server.split(",")
    unknown = set(CHAT_SERVERS) - {*SERVERS, *UVICORN_VARIANTS}
    if unknown or len(set(CHAT_SERVERS)) != len(CHAT_SERVERS):
        parser.error(f"--server: unknown or repeated {sorted(unknown) or CHAT_SERVERS}")
    opts = dict(QUICK if args.quick else FULL)
    only = set(args.only.split(","))
    if args.profile:
        only.add("profile")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers inherit it
    if hard < opts["idle"] + 1000:
        log(f"warning: the open-files limit is {hard}; idle sockets are capped by it")
    # SIGTERM unwinds like Ctrl-C, so the finally below stops every server.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Also when started in the background, where the shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    results: dict[str, Any] = {
        "command": command.strip(),
        "mode": "quick" if args.quick else "full",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "app": app_revision(),
        "servers": CHAT_SERVERS,
        "uvicorn_options": uvicorn_options(),
        "options": opts,
    }
    try:
        log("setup: databases, users, history room")
        data = setup(opts)
        results["setup"] = {"history": data.get("history")}
        if "probe" in only:
            log("probe: queries and service time per send")
            results["probe"] = probe(data)
        if "saturation" in only:
            results["saturation"] = saturation(data, opts)
        if "fanout" in only:
            results["fanout_10x20_20"] = fanout_all("fan-out 10x20@20", data["fanout_rooms"], 20, 20, data, opts)
            results["fanout_1x200_20"] = fanout_all("fan-out 1x200@20", [data["big_room"]], 200, 20, data, opts)
            huge = opts["huge_listeners"]
            results["fanout_1x1000_4"] = fanout_all(f"fan-out 1x{huge}@4", [data["huge_room"]], huge, 4, data, opts)
            if not args.quick:
                results["fanout_10x20_2"] = fanout_all("fan-out 10x20@2", data["fanout_rooms"], 20, 2, data, opts)
        if "history" in only:
            results["history"] = history(data, opts)
        if "idle" in only:
            results["idle"] = idle(data, opts)
        if "profile" in only:
            results["profile"] = profile(data, opts)
    except KeyboardInterrupt:
        log("interrupted: stopping servers")
        return 130
    finally:
        stop_all()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["table"] = table(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{results['mode']}-{stamp}.json"
    text = json.dumps(results, indent=2)
    path.write_text(text)
    (RESULTS / f"latest-{results['mode']}.json").write_text(text)
    print(
        f"\n{command.strip()}  ({results['mode']}, {results['seconds']:.0f} s, {results['machine']['cpu']},"
        f" {results['machine']['cores']} cores, pinned={PIN}, app={results['app']}, servers={CHAT_SERVERS})\n"
    )
    print(results["table"])
    if "probe" in results:
        summary = results["probe"].get("summary", results["probe"])
        print("\nper send (service alone, no websockets):", json.dumps(summary))
        print("group commit (service alone):", json.dumps(results["probe"].get("batches")))
    if "profile" in results:
        print_profile(results["profile"])
    print(f"\nJSON: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
