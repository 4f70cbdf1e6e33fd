"""An earlier version of imgprov as a benchmark method, so that old and new code are measured in one
run on the same machine, over the same index and queries.

    python -m benchmarks.run --size large --baseline-code ../imgprov-previous   # a worktree of HEAD~

The old code runs in a subprocess whose PYTHONPATH is DIR/src; it loads the index and the model
once, then answers one query per line. It uses only names the package keeps stable across versions
(`SNIPPET`), and reads the index read-only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from benchmarks.methods import STAGE_NAMES, Answer, ImgprovMethod, IndexStats

SNIPPET = """
import json, sys
import imgprov
from imgprov import presets
from imgprov.extract.sscd import SSCDExtractor
from imgprov.images import load_image
from imgprov.search import search
from imgprov.storage import open_store

db, stage = sys.argv[1], sys.argv[2]
collection = open_store(db)
embedder = SSCDExtractor(collection.global_conf) if collection.global_conf is not None else None
conf = presets.search(presets.DEFAULT_SEARCH)
print(json.dumps({"imgprov": imgprov.__file__}), flush=True)
for line in sys.stdin:
    job = json.loads(line)
    result = search(collection, load_image(job["path"]).pixels, conf, stage=stage, top_k=job["top_k"],
                    embedder=embedder)
    print(json.dumps({"paths": [m.path for m in result.matches], "scores": [m.score for m in result.matches],
                      "timings": result.timings}), flush=True)
"""


class BaselineMethod:
    """imgprov at an earlier commit (the code under `code`/src), searching the index that `indexer`
    builds with stage `stage`; named after the stage and the commit."""

    def __init__(self, code: Path, indexer: ImgprovMethod, stage: str = "both"):
        self.code = code.resolve()
        self.indexer = indexer
        self.stage = stage
        self.name = f"{STAGE_NAMES[stage]} @ {code_version(self.code)}"
        self._process: subprocess.Popen | None = None

    def index(self, collection: Mapping[str, Path]) -> IndexStats:
        return self.indexer.index(collection)

    def attach(self, collection: Mapping[str, Path]) -> None:
        self.indexer.attach(collection)

    def query(self, path: Path, top_k: int) -> Answer:
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"path": str(path), "top_k": top_k}) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the baseline under {self.code} stopped (exit {process.wait()})")
        answer = json.loads(line)
        return Answer(
            ids=tuple(self.indexer.id_of(found) for found in answer["paths"]),
            scores=tuple(answer["scores"]),
            no_match=not answer["paths"],
            seconds=answer["timings"],
        )

    def close(self) -> None:
        if self._process is not None:
            self._process.stdin.close()
            self._process.wait()
            self._process = None

    def _started(self) -> subprocess.Popen:
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", SNIPPET, str(self.indexer.db), self.stage],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=dict(os.environ, PYTHONPATH=str(self.code / "src")),
                cwd=self.code,
            )
            assert self._process.stdout is not None
            loaded = json.loads(self._process.stdout.readline() or "{}")
            if not Path(loaded.get("imgprov", "/")).resolve().is_relative_to(self.code / "src"):
                raise RuntimeError(f"the baseline imported {loaded.get('imgprov')}, not {self.code / 'src'}")
        return self._process


def code_version(code: Path) -> str:
    """Short commit of DIR, +uncommitted when DIR/src differs from it."""
    head = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(code), "status", "--porcelain", "--", "src"], capture_output=True, text=True
    )
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")
