"""Crash safety (issue 8): `imgprov index` and `imgprov remove` SIGKILLed at 22 seeded random moments
and named points of their writes (tests/faults.py). After every kill the index opens, passes its
check and holds exactly the committed batches; a final run resumes to the whole collection.

`make stress` runs the same scenarios with many more kills (benchmarks/stress.py). The kill points are
the embedded store's file writes, so these tests are `embedded_only`; the distributed store's
interrupted writes are tested in tests/test_storage.py.
"""

from __future__ import annotations

import random

import pytest

from imgprov.storage.embedded.collection import Collection
from tests.faults import (
    KILL_POINTS,
    RETRAIN_PRESET,
    SCENARIOS,
    WRITE_POINTS,
    FaultHarness,
    KillPlan,
    Operation,
    PhotoFolders,
    Tally,
    layout_events,
    retrain_preset_registered,
    run_scenario,
    write_small_photos,
)

pytestmark = [pytest.mark.embedded_only, pytest.mark.slow]

KILLS = {"index-remove": 10, "retrain": 6, "global-descriptors": 4}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> PhotoFolders:
    return write_small_photos(tmp_path_factory.mktemp("fault-photos"))


@pytest.fixture(scope="module")
def tallies(photos, tmp_path_factory) -> dict[str, Tally]:
    workdir = tmp_path_factory.mktemp("faults")
    return {
        name: run_scenario(SCENARIOS[name], photos, workdir / name, seed=number + 1, kills=kills)
        for number, (name, kills) in enumerate(KILLS.items())
    }


@pytest.mark.parametrize("name", list(KILLS))
def test_every_kill_leaves_a_sound_index_holding_every_committed_batch(tallies, name):
    tally = tallies[name]
    assert tally.findings == []
    assert tally.killed >= KILLS[name]
    assert tally.completed >= 1, "the final run resumed and completed"


def test_kills_cover_every_point_of_a_write(tallies):
    points = {kind.split(" at ")[1] for tally in tallies.values() for kind in tally.kills}
    assert set(WRITE_POINTS) <= points
    assert any(kind.startswith("remove") for tally in tallies.values() for kind in tally.kills)


def test_retraining_and_its_reversal_survive_kills(photos, tmp_path):
    """Killed while training the quantizer (exact -> IVF-PQ), and in the removal that falls back to
    exact search; growth retrains happen on the way."""
    harness = FaultHarness(tmp_path / "db", tmp_path / "run", random.Random(5), KILL_POINTS)
    options = ("--batch-size", "2", "--workers", "1", "--global", "none", "--vectors", RETRAIN_PRESET.name)
    index = Operation("index", (photos.root,), options)
    remove_most = Operation("remove", (photos.half_a, photos.half_b))
    with retrain_preset_registered():
        assert harness.run(index, KillPlan("retraining")).killed
        assert not harness.run(index, None).killed
        assert Collection.open(harness.db).local.state.layout.startswith("IVF")
        assert harness.run(remove_most, KillPlan("catalogue-recorded")).killed
        assert not harness.run(remove_most, None).killed
        findings = harness.final_checks(photos.files(photos.keep))
        changes = layout_events(harness.db)
    assert findings == [] and harness.tally.findings == []
    steps = [split_change(change) for change in changes]
    assert any(before == "Flat128" and is_ivf(after) for before, after in steps)
    assert any(is_ivf(before) and is_ivf(after) for before, after in steps)
    assert any(is_ivf(before) and after == "Flat128" for before, after in steps)


def test_the_short_run_kills_at_least_twenty_times(tallies):
    assert sum(tally.killed for tally in tallies.values()) >= 20


def split_change(change: str) -> tuple[str, str]:
    before, after = change.split(" -> ")
    return before, after


def is_ivf(layout: str) -> bool:
    return layout.startswith("IVF")
