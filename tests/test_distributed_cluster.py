"""`imgprov index --ray HOST:PORT` on a real Ray cluster of two nodes: a head and a second node
started with `ray start` on this machine, each its own raylet with one CPU, on free ports and in a
temp dir of their own (nothing shared with other Ray users of the machine, which `ray stop` would
end), with token authentication as `ray start` sets up by default."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_distributed import cli, stored

pytestmark = pytest.mark.slow  # a two-node Ray cluster

RAY = Path(sys.executable).with_name("ray")
START_SECONDS = 120
NODE_PORT_OPTIONS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)
HEAD_PORT_OPTIONS = ("--dashboard-port", "--ray-client-server-port")


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its address and the environment a driver needs (its auth token)."""

    address: str
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(options: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start --block` with one CPU on free ports, in a process group of its own (the node's
    Ray processes are started in it, so that the test can end exactly them)."""
    ports = [f"{option}={free_port()}" for option in NODE_PORT_OPTIONS]
    with log.open("w") as output:
        return subprocess.Popen(
            [
                str(RAY),
                "start",
                "--block",
                "--num-cpus=1",
                "--object-store-memory=200000000",
                *ports,
                *options,
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def alive_nodes(cluster: Cluster) -> list[str]:
    """Ids of the cluster's live nodes, asked by a driver in another process."""
    query = (
        "import ray; ray.init(address={!r}, log_to_driver=False); "
        "print(*[node['NodeID'] for node in ray.nodes() if node['Alive']])"
    )
    done = subprocess.run(
        [sys.executable, "-c", query.format(cluster.address)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def stop_node(node: subprocess.Popen, temp_dir: Path) -> None:
    """End the node's process group, then any process left that runs from the cluster's temp dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=10)
            break
    for pid in leftover_processes(temp_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def leftover_processes(temp_dir: Path) -> list[int]:
    mine = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(temp_dir).encode() in (entry / "cmdline").read_bytes():
                    mine.append(int(entry.name))
    return mine


@contextlib.contextmanager
def two_node_cluster(logs: Path) -> Iterator[Cluster]:
    """A head and a second node on this machine, both with one CPU; ended when the block exits."""
    # A short temp dir: Ray's Unix socket paths live under it and must stay under 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="imgprov-ray-"))
    port = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cluster = Cluster(f"127.0.0.1:{port}", env)
    head_options = [f"{option}={free_port()}" for option in HEAD_PORT_OPTIONS]
    nodes = [
        start_node(
            [
                "--head",
                f"--port={port}",
                f"--temp-dir={temp_dir}",
                "--include-dashboard=false",
                *head_options,
            ],
            env,
            logs / "head.log",
        )
    ]
    try:
        wait_for_port(port, nodes[0])
        nodes.append(start_node([f"--address={cluster.address}"], env, logs / "node.log"))
        deadline = time.monotonic() + START_SECONDS
        while len(alive_nodes(cluster)) < 2:
            assert nodes[1].poll() is None, (logs / "node.log").read_text()
            assert time.monotonic() < deadline, "the second node did not join"
            time.sleep(1)
        yield cluster
    finally:
        for node in reversed(nodes):
            stop_node(node, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_port(port: int, head: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        assert head.poll() is None, "the head node ended at start-up"
        assert time.monotonic() < deadline, "the head node did not start"
        time.sleep(0.2)


@pytest.mark.embedded_only
def test_two_nodes_build_the_threaded_collection_and_a_stopped_cluster_is_one_line(
    tmp_path, photo_db, photo_paths
):
    listing = tmp_path / "listing.txt"
    listing.write_text("".join(f"file://{path.resolve()}\n" for path in photo_paths))
    db = tmp_path / "db"
    with two_node_cluster(tmp_path) as cluster:
        assert len(set(alive_nodes(cluster))) == 2
        done = cli(
            "index", "--db", str(db), "--ray", cluster.address, "--workers", "2", "--batch-size", "2",
            "--list", str(listing), env=cluster.env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"indexed {len(photo_paths)} new, 0 changed, 0 unchanged, 0 failed" in done.stderr
        assert f"Ray workers on 2 nodes handled {len(photo_paths)} sources (" in done.stderr, done.stderr
        local = cli(
            "index", "--db", str(tmp_path / "local"), "--ray", "local", "--workers", "1", str(photo_paths[0]),
            env={**cluster.env, "RAY_ADDRESS": cluster.address},
        )  # fmt: skip
        assert local.returncode == 0, local.stderr
        assert "Ray workers on 1 node handled 1 source\n" in local.stderr
    assert stored(db) == stored(photo_db)
    stopped = cli("index", "--db", str(tmp_path / "after"), "--ray", cluster.address, str(photo_paths[0]))
    assert stopped.returncode == 1
    assert (
        stopped.stderr
        == f"imgprov: error: cannot reach the Ray cluster at {cluster.address}: Connection refused\n"
    )
