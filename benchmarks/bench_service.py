"""Load test of the HTTP service: `POST /v1/search` with 1 and with 8 concurrent clients, and the
web page's full view of a 1-megapixel copy, against `imgprov serve` on the loopback.

The server runs as its own process (as deployed) over a benchmark collection (by default the
small one, data/bench/small-seed0/db: 400 images). The search clients send the collection's
benchmark queries (benign, manip, manip+benign, composite and distinct, taken in turn from each
set) until a fixed number of requests is done. The page's full view is what the page does when an
image is dropped, for a JPEG copy of one of the collection's largest originals resized to about
1 megapixel: search with pictures, then show the first match's comparison. Each view is of
another copy (another original), so no view is answered from the server's comparison cache. Code that answers
`query_token` is asked for the comparison with `/v1/compare` (query by token, original by id), as
today's page does; older code returns it in the search (`top`), as its page used it.

`--baseline-code DIR` also runs every scenario against a server started from that source tree
(PYTHONPATH=DIR/src:DIR), in the same run on the same machine, before this tree's server, so that
old and new are compared side by side. Reported per scenario: requests per second, latency p50 and
p95 as a client sees it, the server's own compute time, and the HTTP statuses. Bounded: fixed
request counts, a per-request timeout, 127.0.0.1 only.

    python -m benchmarks.bench_service [--db data/bench/small-seed0/db ...] \\
        [--baseline-code /work/wt-svc-base] [--requests 48] [--clients 8] [--views 8]

Prints a Markdown table and writes it as the "service" section of docs/benchmarks.md with the
command, date, commit and machine.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np

from benchmarks.report import REPO, write_section
from imgprov.images import load_image
from imgprov.storage import open_store

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 300.0
STARTUP_TIMEOUT = 180.0
DEFAULT_DB = Path("data/bench/small-seed0/db")
QUERY_NAME = re.compile(r"[a-z_]+-\d+\.(png|jpe?g|webp)")
"""Benchmark query files (their masks and validity maps are named `<query>_mask.png`...)."""
ONE_MEGAPIXEL = 1_000_000
COPY_JPEG_QUALITY = 85


@dataclass(frozen=True)
class Scenario:
    """`clients` concurrent clients doing `action` ("search" or "view") with `queries` ("bench": the
    benchmark queries; "copies": the 1-MP copies)."""

    name: str
    action: str
    queries: str
    clients: int


@dataclass(frozen=True)
class Outcome:
    """One request (or, for the page's view, its requests in turn): its HTTP status (0 when it failed
    without one; the first failure's), its latency in seconds, and the seconds the server reports
    for searching and comparing (None unless 200)."""

    status: int
    seconds: float
    compute_seconds: float | None


@dataclass(frozen=True)
class Server:
    """Which code a server runs (`label`: old or new) from which source tree (`code`)."""

    label: str
    code: Path


@dataclass(frozen=True)
class ScenarioReport:
    """Every request of one scenario against one server and collection, and how long it took."""

    collection: str
    server: Server
    scenario: Scenario
    outcomes: tuple[Outcome, ...]
    wall_seconds: float

    @property
    def ok_latencies(self) -> list[float]:
        """Seconds of each request answered 200."""
        return [outcome.seconds for outcome in self.outcomes if outcome.status == 200]

    def row(self) -> str:
        """The scenario's line of the Markdown table."""
        latencies = np.array(self.ok_latencies) if self.ok_latencies else np.array([np.nan])
        computed = [o.compute_seconds for o in self.outcomes if o.compute_seconds is not None] or [np.nan]
        counts = sorted(Counter(outcome.status for outcome in self.outcomes).items())
        cells = [
            self.collection,
            self.scenario.name,
            f"**{self.server.label}**",
            self.scenario.clients,
            len(self.outcomes),
            f"{len(self.ok_latencies) / self.wall_seconds:.2f}",
            f"{np.percentile(latencies, 50):.2f}",
            f"{np.percentile(latencies, 95):.2f}",
            f"{np.median(computed):.2f}",
            ", ".join(f"{status}: {count}" for status, count in counts),
        ]
        return "| " + " | ".join(map(str, cells)) + " |"


@dataclass(frozen=True)
class Workload:
    """What the clients send to one collection: its benchmark queries and its 1-MP copies."""

    name: str
    db: Path
    queries: dict[str, list[bytes]]


def benchmark_queries(folder: Path, count: int) -> list[bytes]:
    """`count` query files, taken in turn from each query set under `folder`."""
    sets = [
        sorted(path for path in directory.iterdir() if QUERY_NAME.fullmatch(path.name))
        for directory in sorted(folder.iterdir())
        if directory.is_dir()
    ]
    chosen = [path for group in itertools.zip_longest(*sets) for path in group if path is not None]
    if not chosen:
        raise SystemExit(f"bench_service: no benchmark queries under {folder}")
    return [path.read_bytes() for path in chosen[:count]]


def one_megapixel_copies(db: Path, count: int) -> list[bytes]:
    """JPEG copies, about 1 megapixel each, of the collection's `count` largest originals."""
    records = sorted(open_store(db).catalogue.all_images(), key=lambda r: r.width * r.height, reverse=True)
    copies = []
    for record in records[:count]:
        pixels = load_image(record.path).pixels
        scale = (ONE_MEGAPIXEL / (record.width * record.height)) ** 0.5
        size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
        resized = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        ok, data = cv2.imencode(".jpg", resized[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, COPY_JPEG_QUALITY])
        assert ok
        copies.append(data.tobytes())
    return copies


def prepare_workload(db: Path, query_count: int, copy_count: int) -> Workload:
    """The collection at `db` (queries in `db`'s sibling folder `queries`)."""
    if not (db / "imgprov.sqlite").is_file():
        raise SystemExit(f"bench_service: no index at {db}")
    copies = one_megapixel_copies(db, copy_count + 1)
    queries = {
        "bench": benchmark_queries(db.parent / "queries", query_count),
        "copies": copies[:copy_count],
        "warm-up copy": copies[copy_count:],
    }
    return Workload(db.parent.name, db, queries)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def code_environment(code: Path) -> dict[str, str]:
    """The environment that makes Python import imgprov from the source tree `code`."""
    return {**os.environ, "PYTHONPATH": f"{code / 'src'}{os.pathsep}{code}"}


def imported_from(code: Path) -> str:
    """Where a Python started with `code_environment(code)` imports imgprov from."""
    done = subprocess.run(
        [sys.executable, "-c", "import imgprov; print(imgprov.__file__)"],
        env=code_environment(code),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def start_server(code: Path, db: Path, port: int, workers: int | None, queue: int) -> subprocess.Popen:
    """`imgprov serve` from the source tree `code` as a child process, once its health endpoint
    answers."""
    command = [sys.executable, "-m", "imgprov.service", "--db", str(db), "--host", HOST, "--port", str(port)]
    command += ["--queue", str(queue), "--timeout", str(REQUEST_TIMEOUT)]
    command += ["--workers", str(workers)] if workers is not None else []
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=code_environment(code)
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench_service: the server exited: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/v1/health", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise SystemExit("bench_service: the server did not start in time")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def run_scenario(base_url: str, scenario: Scenario, queries: list[bytes], total: int) -> tuple[list, float]:
    """One thread per client, each with its own connection; together they send `total` requests (or
    page views). Returns the outcomes and the wall time."""
    tickets = itertools.count()
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    action = ACTIONS[scenario.action]

    def client() -> None:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
            while (ticket := next(tickets)) < total:
                outcome = action(http, queries[ticket % len(queries)])
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(scenario.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


def post(http: httpx.Client, path: str, **form: object) -> tuple[int, dict | None]:
    """POST a form; its status (0 when no answer came) and its JSON when 200."""
    try:
        response = http.post(path, **form)
    except httpx.HTTPError:
        return 0, None
    return response.status_code, response.json() if response.status_code == 200 else None


def search_request(http: httpx.Client, query: bytes) -> Outcome:
    """`POST /v1/search` as an API client sends it (no pictures, no `explain`)."""
    started = time.perf_counter()
    status, body = post(http, "/v1/search", files={"file": ("query.jpg", query, "image/jpeg")})
    return Outcome(status, time.perf_counter() - started, search_seconds(body) if body else None)


def page_view(http: httpx.Client, query: bytes) -> Outcome:
    """What the page does for a dropped image: the search with pictures, then the first match's
    comparison with pictures by `query_token` (code whose search already has it, `top`, needs no
    second request)."""
    started = time.perf_counter()
    status, body = post(http, "/v1/search?pictures=true", files={"file": ("query.jpg", query, "image/jpeg")})
    if body is None:
        return Outcome(status, time.perf_counter() - started, None)
    seconds = search_seconds(body)
    if "query_token" in body and "top" not in body and body["matches"]:
        form = {"query_token": body["query_token"], "original_id": str(body["matches"][0]["id"])}
        status, compared = post(http, "/v1/compare?pictures=true", data=form)
        if compared is None:
            return Outcome(status, time.perf_counter() - started, None)
        seconds += compared["timings"].get("total", 0.0)
    return Outcome(status, time.perf_counter() - started, seconds)


ACTIONS: dict[str, Callable[[httpx.Client, bytes], Outcome]] = {"search": search_request, "view": page_view}


def search_seconds(body: dict) -> float:
    """What the server spent searching, and comparing with the top match when it did, by its own
    timings."""
    top = body.get("top") or {}
    return sum(body["timings"].values()) + top.get("timings", {}).get("total", 0.0)


def warm_up(base_url: str, workload: Workload) -> None:
    """A few requests first: the first search loads models and pages in the index."""
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        for query in workload.queries["bench"][:4]:
            search_request(http, query)
        for copy in workload.queries["warm-up copy"]:
            page_view(http, copy)


def measure(
    server: Server, workload: Workload, plan: list[tuple[Scenario, int]], args: argparse.Namespace
) -> list[ScenarioReport]:
    """Every scenario of `plan` against one server over one collection."""
    port = free_port()
    process = start_server(server.code, workload.db, port, args.workers, args.queue)
    base_url = f"http://{HOST}:{port}"
    reports = []
    try:
        warm_up(base_url, workload)
        for scenario, total in plan:
            outcomes, wall = run_scenario(base_url, scenario, workload.queries[scenario.queries], total)
            reports.append(ScenarioReport(workload.name, server, scenario, tuple(outcomes), wall))
            print(reports[-1].row(), flush=True)
    finally:
        stop_server(process)
    return reports


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu_model()}, {cores} cores available, Python {platform.python_version()}, {system}"


def commit(code: Path = REPO) -> str:
    try:
        git = ["git", "-C", str(code)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def markdown(
    reports: list[ScenarioReport],
    servers: list[Server],
    args: argparse.Namespace,
    load: tuple[float, float],
) -> str:
    workers = f"{args.workers} workers" if args.workers else "its default workers"
    lines = [
        f"`imgprov serve` ({workers}, a queue of {args.queue}) on the loopback. *search*: "
        "`POST /v1/search` as an API client sends it, the collection's benchmark queries in turn from "
        "each set (benign, manip, manip+benign, composite, distinct). *page view*: what the page does "
        "for a dropped JPEG copy, about 1 megapixel, of one of the collection's largest originals (each "
        "view another original, so none is answered from the comparison cache): "
        "`POST /v1/search?pictures=true`, then the first match's comparison with pictures (new code: "
        "`POST /v1/compare?pictures=true` with the search's `query_token` and `original_id`; old code: "
        "the search already compares with the top match, and its page showed that). Latency is per "
        "request (per view) as a client sees it, queueing included; req/s counts successful requests; "
        "compute is the server's own search (+ comparison) time by its `timings`. Old and new ran "
        "one after the other in this run, on the same machine.",
        "",
        "| collection | scenario | code | clients | requests | req/s | p50 (s) | p95 (s) | compute p50 (s) "
        "| statuses |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
        *[report.row() for report in reports],
        "",
        f"- command: `{' '.join(['python -m benchmarks.bench_service', *map(shlex.quote, sys.argv[1:])])}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        *[f"- {server.label}: {server.code} at commit {commit(server.code)}" for server in servers],
        f"- machine: {machine()}",
        f"- load average (1 min) at start and end: {load[0]:.1f}, {load[1]:.1f} "
        "(a shared machine: other jobs ran on the same cores)",
        "",
    ]
    return "\n".join(lines)


def figures(report: ScenarioReport) -> dict:
    """A report as JSON: paths as text."""
    return {**asdict(report), "server": {"label": report.server.label, "code": str(report.server.code)}}


def scenario_plan(args: argparse.Namespace) -> list[tuple[Scenario, int]]:
    return [
        (Scenario("search, 1 client", "search", "bench", 1), args.single_requests),
        (Scenario(f"search, {args.clients} clients", "search", "bench", args.clients), args.requests),
        (Scenario("page view of a 1-MP copy, 1 client", "view", "copies", 1), args.views),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, action="append", help=f"collection(s); default {DEFAULT_DB}")
    parser.add_argument("--baseline-code", type=Path, help="source tree of the old code to compare with")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=48, help="requests of the concurrent scenario")
    parser.add_argument("--single-requests", type=int, default=16, help="requests of the 1-client search")
    parser.add_argument("--views", type=int, default=8, help="page views, each of another 1-MP copy")
    parser.add_argument("--query-count", type=int, default=20, help="benchmark queries sent in turn")
    parser.add_argument("--workers", type=int, help="server workers (default: the server's default)")
    parser.add_argument("--queue", type=int, default=8)
    args = parser.parse_args(argv)
    servers = [Server("new", REPO)]
    if args.baseline_code is not None:
        servers.insert(0, Server("old", args.baseline_code.resolve()))
    for server in servers:
        print(f"{server.label}: imgprov from {imported_from(server.code)}", flush=True)
    load_at_start = os.getloadavg()[0]
    reports = []
    for db in args.db or [DEFAULT_DB]:
        workload = prepare_workload(db, args.query_count, args.views)
        measured = [
            report for server in servers for report in measure(server, workload, scenario_plan(args), args)
        ]
        order = [scenario for scenario, _ in scenario_plan(args)]
        reports += sorted(measured, key=lambda report: order.index(report.scenario))
    text = markdown(reports, servers, args, (load_at_start, os.getloadavg()[0]))
    print(text)
    print(f"wrote {write_section('service', text, [figures(report) for report in reports])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
