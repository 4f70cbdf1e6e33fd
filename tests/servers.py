"""Real servers for the distributed store's tests: a standalone Milvus 2.3.5 (the PyPI package
`milvus`) and a PostgreSQL from Debian's packages, each started on loopback in a temporary
directory and stopped at the end.

`python -m tests.servers` starts both and prints a `--db` URL, for trying the store by hand.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

POSTGRES_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"))
POSTGRES_USER = "postgres"
START_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class Servers:
    """Addresses of the running servers."""

    milvus_host: str
    milvus_port: int
    postgres_url: str

    def db(self, name: str) -> str:
        """The `--db` URL of collection `name` on these servers."""
        return f"milvus://{self.milvus_host}:{self.milvus_port}/{name}?sql={self.postgres_url}"


def missing() -> str | None:
    """Why the servers cannot be started here, or None when they can."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import milvus  # noqa: F401
            import psycopg  # noqa: F401
            import pymilvus  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install '.[scale]')"
    if _postgres_bin() is None:
        return "PostgreSQL's initdb is not installed (make postgres)"
    return None


@contextlib.contextmanager
def running_servers(workdir: Path) -> Iterator[Servers]:
    """Start Milvus and PostgreSQL under `workdir`; stop them when the block ends."""
    with _postgres(workdir / "postgres") as postgres_url, _milvus(workdir / "milvus") as (host, port):
        yield Servers(host, port, postgres_url)


@contextlib.contextmanager
def _milvus(data_dir: Path) -> Iterator[tuple[str, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(data_dir))
    server.config.set("proxy_port", _free_port())
    server.start()
    try:
        yield "127.0.0.1", server.listen_port
    finally:
        server.stop()
        if server.config.base_data_dir:
            shutil.rmtree(server.config.base_data_dir, ignore_errors=True)


@contextlib.contextmanager
def _postgres(data_dir: Path) -> Iterator[str]:
    """An initdb'd cluster owned by the `postgres` user when run as root, trust authentication on
    127.0.0.1 only; yields its URL."""
    binaries = _postgres_bin()
    assert binaries is not None
    data_dir.mkdir(parents=True)
    as_user = _as_postgres_user(data_dir)
    port = _free_port()
    subprocess.run(
        [*as_user, str(binaries / "initdb"), "-D", str(data_dir / "data"), "-A", "trust", "-U", "imgprov"],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            *as_user,
            str(binaries / "postgres"),
            "-D",
            str(data_dir / "data"),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={data_dir}",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "postgres.log").open("w"),
    )
    try:
        _wait_for_port(port, server)
        url = f"postgresql://imgprov@127.0.0.1:{port}/postgres"
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


def _as_postgres_user(directory: Path) -> list[str]:
    """The prefix running a command as `postgres` (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam(POSTGRES_USER)
    for path in (directory, *directory.parents):
        if path == Path(tempfile.gettempdir()) or path == Path("/"):
            break
        os.chown(path, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", POSTGRES_USER, "--"]


def _postgres_bin() -> Path | None:
    for directory in POSTGRES_BIN_DIRS:
        if (directory / "initdb").is_file():
            return directory
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no server on port {port} after {START_TIMEOUT_SECONDS} s")


def main() -> None:
    reason = missing()
    if reason:
        sys.exit(f"cannot start the servers: {reason}")
    with (
        tempfile.TemporaryDirectory(prefix="imgprov-servers-") as workdir,
        running_servers(Path(workdir)) as servers,
    ):
        print(servers.db("photos"), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
