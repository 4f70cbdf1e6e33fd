"""The attack table of `make stress` (issue 23): requests that try to tie up `imgprov serve`.

Each attack runs against one server (2 workers by default, a token set, searching open) while a
legitimate client sends one real search a second after the attack began; for each attack the table
gives the server's CPU seconds and peak resident memory during it, the status and latency of that
search, the status of `/v1/health` at its end, and what the attackers' own requests got.

Attacks: declared-size bombs (a 16x16 JPEG whose header declares 7000x7000) on search and compare,
a blank 7000x7000 PNG, a real photo upscaled to 7000x7000, clients that send a search and hang up,
silent connections, connections trickling header lines, and unauthenticated 30 MB uploads.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from imgprov.demo import skimage_data_dir

BOMB_SIDE = 7000
IN_FLIGHT = 10
"""Attacking requests sent at once."""
SOCKETS = 40
"""Silent or slow-header connections opened at once (the issue's reproduction used 32)."""
UPLOAD_MIB = 30
UNAUTHENTICATED_UPLOADS = 6
LEGITIMATE_DELAY_SECONDS = 1.0
ATTACK_SECONDS = 15.0
"""How long the connection attacks hold their sockets."""
SAMPLE_SECONDS = 0.2
TOKEN = "stress-token-0123456789abcdef"


@dataclass
class ProcessWatch:
    """CPU seconds and peak resident memory of a process while the `with` block runs."""

    pid: int
    peak_mib: float = 0.0
    cpu_seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ProcessWatch:
        self._cpu_start = process_cpu_seconds(self.pid)
        self.peak_mib = resident_mib(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_seconds = process_cpu_seconds(self.pid) - self._cpu_start

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak_mib = max(self.peak_mib, resident_mib(self.pid))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def declared_size_bomb() -> bytes:
    """A 16x16 grey JPEG whose frame header declares BOMB_SIDE x BOMB_SIDE pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = BOMB_SIDE.to_bytes(2, "big") * 2
    return bytes(data)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def blank_png() -> bytes:
    return encoded(Image.new("RGB", (BOMB_SIDE, BOMB_SIDE)), "PNG", optimize=True)


def large_photo() -> bytes:
    """The astronaut photo upscaled to BOMB_SIDE x BOMB_SIDE, as a JPEG."""
    photo = Image.open(skimage_data_dir() / "astronaut.png").convert("RGB")
    return encoded(photo.resize((BOMB_SIDE, BOMB_SIDE), Image.Resampling.BICUBIC), "JPEG", quality=85)


@dataclass(frozen=True)
class Attack:
    """A name, what it sends, and `run(base_url)` returning a Counter of what its requests got."""

    name: str
    sends: str
    run: Callable[[str], Counter]


def concurrent_posts(
    path: str, files: Callable[[], dict], data: dict | None = None
) -> Callable[[str], Counter]:
    """IN_FLIGHT clients posting the same form at once; the statuses they get (0: no answer)."""

    def post(base_url: str) -> int:
        try:
            return httpx.post(base_url + path, files=files(), data=data or {}, timeout=300).status_code
        except httpx.HTTPError:
            return 0

    def run(base_url: str) -> Counter:
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            return Counter(pool.map(post, [base_url] * IN_FLIGHT))

    return run


def hang_ups(photo: bytes) -> Callable[[str], Counter]:
    """IN_FLIGHT clients that send a whole search of `photo` and close the connection at once."""
    boundary = "stressboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n\r\n'
    body = head.encode() + photo + f"\r\n--{boundary}--\r\n".encode()

    def send(base_url: str) -> str:
        with connection_to(base_url) as connection:
            connection.sendall(
                request_head("/v1/search", f"multipart/form-data; boundary={boundary}", len(body))
            )
            connection.sendall(body)
        return "sent and closed"

    def run(base_url: str) -> Counter:
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            return Counter(pool.map(send, [base_url] * IN_FLIGHT))

    return run


def held_sockets(trickle: bytes) -> Callable[[str], Counter]:
    """SOCKETS connections held for ATTACK_SECONDS, sending `trickle` once a second (nothing when
    empty); counts how many the server closed and after how long (rounded to seconds)."""

    def run(base_url: str) -> Counter:
        connections = [connection_to(base_url) for _ in range(SOCKETS)]
        opened = time.monotonic()
        closed_after: dict[int, int] = {}
        for connection in connections:
            connection.settimeout(0.01)
        try:
            if trickle:
                for connection in connections:
                    connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: stress\r\n")
            while time.monotonic() - opened < ATTACK_SECONDS and len(closed_after) < len(connections):
                for number, connection in enumerate(connections):
                    if number not in closed_after and is_closed(connection, trickle):
                        closed_after[number] = round(time.monotonic() - opened)
                time.sleep(1.0)
        finally:
            for connection in connections:
                connection.close()
        tally = Counter(f"closed by the server after {seconds} s" for seconds in closed_after.values())
        tally["still open at the end"] = len(connections) - len(closed_after)
        return tally

    return run


def is_closed(connection: socket.socket, trickle: bytes) -> bool:
    try:
        if trickle:
            connection.sendall(trickle)
        return connection.recv(4096) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def unauthenticated_uploads(base_url: str) -> Counter:
    """UNAUTHENTICATED_UPLOADS clients declaring a 30 MB upload without a token; each reports its
    status and how much of the body it had sent when the answer came."""
    size = UPLOAD_MIB << 20
    boundary = "stressboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'.encode()

    def send(_: int) -> str:
        with connection_to(base_url) as connection:
            connection.sendall(request_head("/v1/images", f"multipart/form-data; boundary={boundary}", size))
            connection.sendall(head)
            sent, chunk, reply = len(head), b"\xff" * (1 << 16), b""
            connection.settimeout(0.05)
            while sent < size:
                with contextlib.suppress(TimeoutError):
                    reply = connection.recv(4096)
                    break
                try:
                    connection.sendall(chunk)
                    sent += len(chunk)
                except TimeoutError:
                    continue
                except OSError:
                    break
            connection.settimeout(10)
            with contextlib.suppress(OSError):
                reply = reply or connection.recv(4096)
        status = reply[9:12].decode(errors="replace") or "none"
        return f"{status} after {sent / size:.0%} of the body"

    with ThreadPoolExecutor(UNAUTHENTICATED_UPLOADS) as pool:
        return Counter(pool.map(send, range(UNAUTHENTICATED_UPLOADS)))


def connection_to(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def request_head(path: str, content_type: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: stress\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def attacks() -> list[Attack]:
    bomb, photo = declared_size_bomb(), large_photo()
    blank = blank_png()
    bomb_file = {"file": ("bomb.jpg", bomb, "image/jpeg")}
    bomb_pair = {"query": ("bomb.jpg", bomb, "image/jpeg"), "original": ("bomb.jpg", bomb, "image/jpeg")}
    return [
        Attack(
            "declared-size bomb, search",
            f"{len(bomb)} B JPEG declaring {BOMB_SIDE}²",
            concurrent_posts("/v1/search", lambda: bomb_file),
        ),
        Attack(
            "declared-size bomb, compare",
            "the bomb as query and original",
            concurrent_posts("/v1/compare", lambda: bomb_pair),
        ),
        Attack(
            "blank PNG, search",
            f"{len(blank) // 1024} KB all-zero {BOMB_SIDE}² PNG",
            concurrent_posts("/v1/search", lambda: {"file": ("blank.png", blank, "image/png")}),
        ),
        Attack(
            "large photo, search",
            f"{len(photo) >> 20} MB {BOMB_SIDE}² JPEG photo",
            concurrent_posts("/v1/search", lambda: {"file": ("big.jpg", photo, "image/jpeg")}),
        ),
        Attack("clients hanging up", f"search of the {BOMB_SIDE}² photo, then close", hang_ups(photo)),
        Attack("silent connections", f"{SOCKETS} sockets sending nothing", held_sockets(b"")),
        Attack(
            "slow headers", f"{SOCKETS} sockets, one header line a second", held_sockets(b"X-Slow: 1\r\n")
        ),
        Attack(
            "unauthenticated uploads",
            f"{UNAUTHENTICATED_UPLOADS} x {UPLOAD_MIB} MB POST /v1/images, no token",
            unauthenticated_uploads,
        ),
    ]


def legitimate_search(base_url: str, query: bytes, outcome: dict) -> None:
    """One real search after LEGITIMATE_DELAY_SECONDS: its status and latency into `outcome`."""
    time.sleep(LEGITIMATE_DELAY_SECONDS)
    started = time.perf_counter()
    try:
        status = httpx.post(
            base_url + "/v1/search", files={"file": ("q.jpg", query, "image/jpeg")}, timeout=300
        ).status_code
    except httpx.HTTPError:
        status = 0
    outcome.update(status=status, seconds=round(time.perf_counter() - started, 2))


def health_status(base_url: str) -> int:
    try:
        return httpx.get(base_url + "/v1/health", timeout=10).status_code
    except httpx.HTTPError:
        return 0


def run_attack(attack: Attack, base_url: str, pid: int, query: bytes) -> dict:
    """One attack with a legitimate search beside it; then wait until the server is idle again."""
    legitimate: dict = {}
    beside = threading.Thread(target=legitimate_search, args=(base_url, query, legitimate))
    with ProcessWatch(pid) as watch:
        beside.start()
        started = time.perf_counter()
        got = attack.run(base_url)
        seconds = time.perf_counter() - started
        beside.join()
        health = health_status(base_url)
        wait_until_idle(base_url)
    return {
        "attack": attack.name,
        "sends": attack.sends,
        "attack_seconds": round(seconds, 1),
        "server_cpu_seconds": round(watch.cpu_seconds, 1),
        "peak_rss_mib": round(watch.peak_mib, 1),
        "legitimate_search": legitimate,
        "health": health,
        "attackers_got": {str(key): value for key, value in sorted(got.items(), key=str)},
    }


def wait_until_idle(base_url: str, seconds: float = 60.0) -> None:
    """Until health says no job is pending (cancelled jobs stop at their next step)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if httpx.get(base_url + "/v1/health", timeout=10).json().get("pending") == 0:
                return
        time.sleep(0.5)


@contextlib.contextmanager
def token_environment() -> Iterator[None]:
    """The server started inside has a token (for the unauthenticated uploads to be refused)."""
    previous = os.environ.get("IMGPROV_TOKEN")
    os.environ["IMGPROV_TOKEN"] = TOKEN
    try:
        yield
    finally:
        if previous is None:
            del os.environ["IMGPROV_TOKEN"]
        else:
            os.environ["IMGPROV_TOKEN"] = previous


def run_attacks(base_url: str, pid: int, query: bytes) -> list[dict]:
    """Every attack in turn against the server at `base_url` (process `pid`)."""
    return [run_attack(attack, base_url, pid, query) for attack in attacks()]


def attack_lines(rows: list[dict], workers: int, queue: int) -> list[str]:
    lines = [
        "### Attacks",
        "",
        f"Each attack against `imgprov serve` ({workers} workers, queue {queue}, default CPU budget per "
        "job, a token set) while one legitimate search of a demo query starts "
        f"{LEGITIMATE_DELAY_SECONDS:g} s after it began; {IN_FLIGHT} attacking requests in flight at "
        "once. Server CPU and peak resident memory are measured over the attack and until the server "
        "is idle again.",
        "",
        "| attack | sends | server CPU (s) | peak RSS (MiB) | legitimate search | health | attackers got |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for row in rows:
        search = row["legitimate_search"]
        got = ", ".join(f"{key}: {value}" for key, value in row["attackers_got"].items())
        lines.append(
            f"| {row['attack']} | {row['sends']} | {row['server_cpu_seconds']} | {row['peak_rss_mib']} | "
            f"{search.get('status')} in {search.get('seconds')} s | {row['health']} | {got} |"
        )
    return lines
