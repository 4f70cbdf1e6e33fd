"""The attack table of `make stress`: its inputs and how it is judged and written (the attacks
themselves need a running server; `python -m benchmarks.stress --only-attacks` runs them)."""

from __future__ import annotations

import io

from PIL import Image

from benchmarks.stress import attack_section, attacks_held
from benchmarks.stress_attacks import BOMB_SIDE, declared_size_bomb


def row(status: int = 200, seconds: float = 1.0, health: int = 200) -> dict:
    return {
        "attack": "silent connections",
        "sends": "40 sockets sending nothing",
        "server_cpu_seconds": 0.1,
        "peak_rss_mib": 500.0,
        "legitimate_search": {"status": status, "seconds": seconds},
        "health": health,
        "attackers_got": {"closed by the server after 10 s": 40},
    }


def attacks(*rows: dict) -> dict:
    return {
        "command": "python -m benchmarks.stress",
        "date": "d",
        "commit": "c",
        "workers": 2,
        "queue": 16,
        "rows": list(rows),
    }


def test_the_bomb_is_small_and_declares_a_huge_image():
    bomb = declared_size_bomb()
    assert len(bomb) < 1024
    assert Image.open(io.BytesIO(bomb)).size == (BOMB_SIDE, BOMB_SIDE)


def test_attacks_hold_only_when_every_legitimate_search_and_health_check_succeeds():
    assert attacks_held(attacks(row(), row(seconds=2.9)))
    assert not attacks_held(attacks(row(), row(seconds=3.5)))
    assert not attacks_held(attacks(row(status=503)))
    assert not attacks_held(attacks(row(health=503)))


def test_the_attack_section_is_a_table_with_its_provenance():
    lines = attack_section(attacks(row()))
    assert lines[1] == "### Attacks" and any("python -m benchmarks.stress" in line for line in lines)
    assert (
        "| silent connections | 40 sockets sending nothing | 0.1 | 500.0 | 200 in 1.0 s | 200 |" in lines[-1]
    )
