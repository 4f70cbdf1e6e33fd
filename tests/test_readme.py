"""The README's command-line examples run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from imgprov.demo import collect_originals, make_queries

README = Path(__file__).resolve().parents[1] / "README.md"


def console_commands() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_readme_has_examples_for_every_command():
    used = {shlex.split(command)[1] for command in console_commands()}
    assert used >= {"index", "search", "compare", "info", "check", "remove"}


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    originals = collect_originals(tmp_path / "out/demo/originals", corpus_limit=0)
    make_queries(tmp_path / "out/demo/originals", tmp_path / "out/demo/queries")
    assert originals
    for command in console_commands():
        words = shlex.split(command)
        assert words[0] == "imgprov"
        done = subprocess.run(
            [sys.executable, "-m", "imgprov", *words[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    for picture in ("votes.png", "roles.png", "edits.png", "mask.png", "compare.png"):
        assert (tmp_path / picture).stat().st_size > 0
