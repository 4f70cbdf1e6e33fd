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
import signal
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
    with _postgres() as postgres_url, _milvus(workdir / "milvus") as (host, port):
        yield Servers(host, port, postgres_url)


@contextlib.contextmanager
def _milvus(data_dir: Path) -> Iterator[tuple[str, int]]:
    """A standalone Milvus whose every port is free: its embedded etcd gets a configuration file
    with its own client and peer ports (by default it takes 2379 and 2380, so a second server on the
    machine would fail)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import milvus
        from milvus import MilvusServer, MilvusServerConfig

    data_dir.mkdir(parents=True)
    template = Path(milvus.__file__).parent / "data" / "config.yaml.template"
    text = template.read_text()
    embedded = "  use:\n    embed: true"
    assert embedded in text, "the milvus package's configuration template changed"
    own_template = data_dir / "milvus.yaml.template"
    own_template.write_text(
        text.replace(embedded, embedded + "\n  config:\n    path: {{ etcd_config_path }}", 1)
    )
    client, peer, proxy = _free_port(), _free_port(), _free_port()
    etcd_config = data_dir / "etcd.yaml"
    etcd_config.write_text(
        "name: default\n"
        f"listen-client-urls: http://127.0.0.1:{client}\n"
        f"advertise-client-urls: http://127.0.0.1:{client}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
    )
    config = MilvusServerConfig(template=str(own_template), data_dir=str(data_dir / "server"))
    config.glog_conf_file = str(template.parent / "glog.conf")
    server = MilvusServer(config)
    config.set("etcd_config_path", str(etcd_config))
    config.set("etcd_port", client)
    config.set("proxy_port", proxy)
    server.start()
    try:
        yield "127.0.0.1", proxy
    finally:
        server.stop()


@contextlib.contextmanager
def _postgres() -> Iterator[str]:
    """An initdb'd cluster, trust authentication on 127.0.0.1 only; yields its URL.

    PostgreSQL refuses to run as root: then the cluster lives in a new directory of its own under
    the system's temporary directory, owned by the `postgres` user (who could not reach one inside
    root's private temporary folders), and runs as that user.
    """
    binaries = _postgres_bin()
    assert binaries is not None
    data_dir = Path(tempfile.mkdtemp(prefix="imgprov-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam(POSTGRES_USER)
        os.chown(data_dir, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", POSTGRES_USER, "--"]
    port = _free_port()
    server = None
    try:
        subprocess.run(
            [
                *as_user,
                str(binaries / "initdb"),
                "-D",
                str(data_dir / "data"),
                "-A",
                "trust",
                "-U",
                "imgprov",
            ],
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
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(port, server)
        yield f"postgresql://imgprov@127.0.0.1:{port}/postgres"
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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
