"""The command line: outputs, and one clear line plus a non-zero exit for every kind of bad input,
with the index left intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from imgprov.storage.originals import originals_folder
from tests.support import jpeg, photo, write_jpeg
from tests.test_images import huge_png


def imgprov(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgprov", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.fixture(scope="module")
def cli_db(new_db, photo_paths) -> str:
    """Six photos indexed by the CLI in the store under test (`IMGPROV_TEST_STORE`)."""
    db = new_db()
    done = imgprov("index", "--db", db, *(str(path) for path in photo_paths[:6]))
    assert done.returncode == 0, done.stderr
    return db


def catalogue_state(db: str) -> tuple[str, str]:
    info = json.loads(imgprov("info", "--db", str(db), "--json").stdout)
    return info["images"], info["local_vectors"]


def test_search_json_lines(cli_db, tmp_path):
    first = write_jpeg(tmp_path / "a.jpg", jpeg(photo("coffee.png")[:, ::-1], 50))
    second = write_jpeg(tmp_path / "b.jpg", photo("ihc.png"))
    done = imgprov("search", "--db", str(cli_db), "--json", "--top-k", "3", str(first), str(second))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["query"] for line in lines] == [str(first), str(second)]
    top = lines[0]["matches"][0]
    assert top["path"].endswith("coffee.png") and top["rank"] == 1 and top["inliers"] > 50
    assert set(top) >= {"path", "id", "rank", "score", "inliers", "regions"}
    assert set(top["regions"][0]) >= {"query_box", "match_box", "score"}
    assert lines[1]["matches"] == [] and lines[1]["unconfirmed"] == []


@pytest.mark.slow
def test_search_lists_unconfirmed_candidates_when_asked(cli_db, tmp_path):
    query = write_jpeg(tmp_path / "q.jpg", photo("ihc.png"))
    done = imgprov("search", "--db", str(cli_db), "--json", "--unconfirmed", "--top-k", "4", str(query))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["matches"] == [], "ihc.png is not indexed"
    candidates = result["unconfirmed"]
    assert 1 <= len(candidates) <= 4 and [c["rank"] for c in candidates] == list(
        range(1, len(candidates) + 1)
    )
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    table = imgprov("search", "--db", str(cli_db), "--unconfirmed", "--top-k", "4", str(query))
    assert "no match in the collection" in table.stdout and "(unconfirmed)" in table.stdout


def test_vote_map_is_written(cli_db, tmp_path):
    query = write_jpeg(tmp_path / "q.jpg", photo("chelsea.png"))
    out = tmp_path / "votes.png"
    done = imgprov("search", "--db", str(cli_db), "--vote-map", str(out), str(query))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1000
    assert "chelsea.png" in done.stdout


def bad_inputs(folder: Path) -> dict[str, Path]:
    text = folder / "notes.jpg"
    text.write_text("not an image\n")
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    truncated = folder / "truncated.jpg"
    data = write_jpeg(folder / "full.jpg", photo("astronaut.png")).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    huge = folder / "huge.png"
    huge.write_bytes(huge_png(30000, 30000))
    return {
        "missing": folder / "missing.jpg",
        "text": text,
        "empty": empty,
        "truncated": truncated,
        "huge": huge,
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing", "text", "empty", "truncated", "huge"])
def test_bad_inputs_give_one_line_and_leave_the_index_intact(cli_db, tmp_path, kind):
    path = bad_inputs(tmp_path)[kind]
    before = catalogue_state(cli_db)
    for command in ("index", "search"):
        done = imgprov(command, "--db", str(cli_db), str(path))
        assert done.returncode != 0
        errors = [line for line in done.stderr.splitlines() if "error" in line or "skipped" in line]
        assert len(errors) == 1, done.stderr
        assert str(path.name) in errors[0]
        assert "Traceback" not in done.stderr
    assert catalogue_state(cli_db) == before
    assert imgprov("check", "--db", str(cli_db)).returncode == 0


@pytest.mark.slow
@pytest.mark.embedded_only
def test_unwritable_db_and_wrong_arguments(tmp_path, photo_paths):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (
        ["index", "--db", str(blocker / "db"), str(photo_paths[0])],
        ["search", "--db", str(tmp_path / "no-index"), str(photo_paths[0])],
        ["search", "--top-k", "0", str(photo_paths[0])],
        ["search", "--preset", "nonsense", "--db", str(tmp_path), str(photo_paths[0])],
        ["frobnicate"],
    ):
        done = imgprov(*args)
        assert done.returncode != 0, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("imgprov: error:")


@pytest.mark.slow
@pytest.mark.embedded_only
def test_damaged_index_is_reported_not_crashed(tmp_path, photo_paths):
    db = tmp_path / "db"
    assert imgprov("index", "--db", str(db), str(photo_paths[0])).returncode == 0
    for vector_file in db.glob("*.faiss"):
        vector_file.write_bytes(b"garbage")
    done = imgprov("search", "--db", str(db), str(photo_paths[0]))
    assert done.returncode != 0 and "check --repair" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert imgprov("check", "--db", str(db)).returncode != 0
    assert imgprov("check", "--db", str(db), "--repair").returncode == 0
    assert imgprov("search", "--db", str(db), str(photo_paths[0])).returncode == 0
    (db / "imgprov.sqlite").write_bytes(b"not sqlite at all" * 100)
    done = imgprov("info", "--db", str(db))
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_roles_overlay_explain_and_report(cli_db, tmp_path):
    spliced = photo("coffee.png").copy()
    spliced[120:300, 380:560] = cv2.resize(photo("astronaut.png")[30:260, 130:360], (180, 180))
    query = write_jpeg(tmp_path / "spliced.jpg", spliced, 80)
    outputs = {name: tmp_path / f"{name}.png" for name in ("overlay", "explain")}
    report = tmp_path / "report.json"
    done = imgprov(
        "search",
        "--db",
        str(cli_db),
        "--json",
        "--explain",
        "--overlay",
        str(outputs["overlay"]),
        "--explain-overlay",
        str(outputs["explain"]),
        "--report",
        str(report),
        str(query),
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout.splitlines()[-1])
    roles = {match["path"].rsplit("/", 1)[-1]: match["role"] for match in document["matches"]}
    assert roles == {"coffee.png": "host", "astronaut.png": "donor"}
    assert document["explain"]["verdict"] == "manipulated"
    assert all(path.stat().st_size > 1000 for path in outputs.values())
    ingredients = json.loads(report.read_text())["ingredients"]
    assert {item["relationship"] for item in ingredients} == {"parentOf", "componentOf"}


def test_info_of_one_image(cli_db, photo_paths):
    done = imgprov("info", "--db", str(cli_db), "--json", str(photo_paths[0]))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["image"]["path"] == str(photo_paths[0]) and document["credentials"] is None
    missing = imgprov("info", "--db", str(cli_db), str(photo_paths[0].with_name("nope.png")))
    assert missing.returncode == 1 and "not in the index" in missing.stderr


def test_check_notes_an_orphaned_upload_and_repair_deletes_it(cli_db):
    orphan = originals_folder(cli_db) / f"{'0' * 64}.jpg"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a server killed before indexing it")
    try:
        checked = imgprov("check", "--db", cli_db)
        assert checked.returncode == 0, checked.stderr
        assert f"note: {orphan.name} in the originals folder" in checked.stdout
        assert orphan.exists()
        repaired = imgprov("check", "--db", cli_db, "--repair")
        assert repaired.returncode == 0, repaired.stderr
        assert f"repaired: deleted {orphan.name}" in repaired.stdout
        assert not orphan.exists()
    finally:
        orphan.unlink(missing_ok=True)
