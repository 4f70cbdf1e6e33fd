"""Load test of `POST /v1/search`: 8 concurrent clients against `imgprov serve` on the loopback.

The server runs as its own process (as deployed), over the demo collection (the 14 scikit-image
photos); the clients send the demo's four queries in turn (recompressed, mirrored, spliced,
unrelated) until a fixed number of requests is done. Reported per scenario: requests per second,
latency p50 and p99, and the HTTP statuses. Bounded: a fixed request count, a per-request timeout,
127.0.0.1 only.

    python -m benchmarks.bench_service [--requests 48] [--clients 8] [--workers 2] [--queue 8]

Prints a Markdown table and writes it as the "service" section of docs/benchmarks.md with the
command, date, commit and machine.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks.report import write_section
from imgprov.demo import collect_originals, make_queries
from imgprov.indexing.pipeline import discover_images, index_paths
from imgprov.storage.embedded.collection import Collection

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 300.0
STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class Scenario:
    """`clients` concurrent clients posting the queries to `path`."""

    name: str
    path: str
    clients: int


@dataclass(frozen=True)
class Outcome:
    """One request: its HTTP status (0 when it failed without one), its latency in seconds, and the
    seconds the server reports for search plus the top match's comparison (None unless 200)."""

    status: int
    seconds: float
    compute_seconds: float | None


@dataclass(frozen=True)
class ScenarioReport:
    """Every request of one scenario and how long the whole scenario took."""

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
            self.scenario.name,
            f"`{self.scenario.path}`",
            self.scenario.clients,
            len(self.outcomes),
            f"{len(self.ok_latencies) / self.wall_seconds:.2f}",
            f"{np.percentile(latencies, 50):.2f}",
            f"{np.percentile(latencies, 99):.2f}",
            f"{np.median(computed):.2f}",
            ", ".join(f"{status}: {count}" for status, count in counts),
        ]
        return "| " + " | ".join(map(str, cells)) + " |"


def prepare_collection(workdir: Path) -> tuple[Path, list[bytes]]:
    """The demo collection (indexed once, reused) and the demo queries' bytes."""
    originals = collect_originals(workdir / "originals", corpus_limit=0)
    queries = make_queries(workdir / "originals", workdir / "queries")
    db = workdir / "db"
    files, _ = discover_images(originals)
    with Collection.writer(db) as collection:
        report = index_paths(collection, files)
    if report.failed:
        raise SystemExit(f"bench_service: could not index {report.failed[0][0]}: {report.failed[0][1]}")
    return db, [query.path.read_bytes() for query in queries]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(db: Path, port: int, workers: int, queue: int) -> subprocess.Popen:
    """`imgprov serve` as a child process, once its health endpoint answers."""
    command = [sys.executable, "-m", "imgprov.service", "--db", str(db), "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers), "--queue", str(queue), "--timeout", str(REQUEST_TIMEOUT)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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


def run_scenario(base_url: str, scenario: Scenario, queries: list[bytes], total: int) -> ScenarioReport:
    """One thread per client, each with its own connection; together they send `total` requests."""
    tickets = itertools.count()
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
            while (ticket := next(tickets)) < total:
                query = queries[ticket % len(queries)]
                outcome = timed_request(http, scenario.path, query)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(scenario.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ScenarioReport(scenario, tuple(outcomes), time.perf_counter() - started)


def timed_request(http: httpx.Client, path: str, query: bytes) -> Outcome:
    started = time.perf_counter()
    try:
        response = http.post(path, files={"file": ("query.jpg", query, "image/jpeg")})
    except httpx.HTTPError:
        return Outcome(0, time.perf_counter() - started, None)
    seconds = time.perf_counter() - started
    return Outcome(
        response.status_code, seconds, compute_seconds(response.json()) if response.is_success else None
    )


def compute_seconds(body: dict) -> float:
    """What the server spent searching and comparing with the top match, by its own timings."""
    top = body.get("top") or {}
    return sum(body["timings"].values()) + top.get("timings", {}).get("total", 0.0)


def warm_up(base_url: str, queries: list[bytes]) -> None:
    """One request per query first: the first search loads models and pages in the index."""
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        for query in queries:
            timed_request(http, "/v1/search", query)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu_model()}, {cores} cores available, Python {platform.python_version()}, {system}"


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def markdown(reports: list[ScenarioReport], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        f"`POST /v1/search` with {args.clients} concurrent clients on the loopback; the server is "
        f"`imgprov serve` with {args.workers} workers and a queue of {args.queue}, over the demo collection "
        "(14 photos). Each client sends the demo's four queries in turn (recompressed, mirrored and rotated, "
        "spliced, unrelated). Latency is per request as a client sees it, queueing included; req/s counts "
        "successful requests; compute is the server's own search + top-match comparison time per request "
        "(the rest of the latency is waiting for a worker, decoding, pictures and transfer).",
        "",
        "| scenario | endpoint | clients | requests | req/s | p50 (s) | p99 (s) | compute p50 (s) "
        "| statuses |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *[report.row() for report in reports],
        "",
        f"- command: `{' '.join(['python -m benchmarks.bench_service', *map(shlex.quote, sys.argv[1:])])}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit()}",
        f"- machine: {machine()}",
        f"- load average (1 min) at start and end: {load[0]:.1f}, {load[1]:.1f} "
        "(a shared machine: other jobs ran on the same cores)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrent scenario")
    parser.add_argument("--baseline-requests", type=int, default=8, help="requests of the 1-client baseline")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=Path("out/bench-service"))
    args = parser.parse_args(argv)
    plan = [
        (Scenario("search, 1 client (baseline)", "/v1/search", 1), args.baseline_requests),
        (Scenario("search", "/v1/search", args.clients), args.requests),
        (
            Scenario("search + pictures (the web page)", "/v1/search?pictures=true", args.clients),
            args.requests,
        ),
    ]
    db, queries = prepare_collection(args.workdir)
    port = free_port()
    server = start_server(db, port, args.workers, args.queue)
    base_url = f"http://{HOST}:{port}"
    load_at_start = os.getloadavg()[0]
    try:
        warm_up(base_url, queries)
        reports = [run_scenario(base_url, scenario, queries, total) for scenario, total in plan]
    finally:
        stop_server(server)
    text = markdown(reports, args, (load_at_start, os.getloadavg()[0]))
    print(text)
    print(f"wrote {write_section('service', text, [asdict(report) for report in reports])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
