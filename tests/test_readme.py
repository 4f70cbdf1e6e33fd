"""The README's command-line and Python examples run as written."""

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


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def demo_files(folder: Path) -> None:
    """The demo's originals and queries under `folder`/out/demo, as the README's examples name them."""
    assert collect_originals(folder / "out/demo/originals", corpus_limit=0)
    make_queries(folder / "out/demo/originals", folder / "out/demo/queries")


def test_readme_has_examples_for_every_command():
    used = {shlex.split(command)[1] for command in console_commands()}
    assert used >= {"index", "search", "compare", "info", "check", "remove"}


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    demo_files(tmp_path)
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


def test_readme_python_example_runs(tmp_path):
    [example] = python_examples()
    demo_files(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1 host ") and lines[0].endswith("astronaut.png")
    assert lines[-1].startswith("manipulated [")
