"""A small load (issue 16), as a behaviour test: 100 simulated pilots and 6 users against a
real ``pilotwms serve --processes 2`` for 20 s (``bench/load.py``'s generator), on SQLite and
MariaDB. Every call succeeds, no job is matched twice, every matched job ends Done (or Killed
by its owner), nothing submitted is left behind, and both groups get work in the ratio of
their shares. Speed is not asserted here: ``bench/load.py`` prints the figures."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench.load import LoadOptions, run_load

from tests.support.mariadb import fresh_database


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_100_pilots_lose_nothing_and_match_once(backend: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    opts = LoadOptions(pilots=100, users=6, duration=20.0, processes=2, beats=2,
                       heartbeat=1.0, poll=1.0, bulk=40, kill_every=80, ramp=3.0, drain=240.0)
    if backend == "mariadb":
        with fresh_database(request.getfixturevalue("mariadb_admin_url")) as url:
            opts.database = url
            report = run_load(opts, tmp_path, label=backend)
    else:
        report = run_load(opts, tmp_path, label=backend)
    print("\n" + "\n".join(report.lines()))
    fig = report.run.fig
    assert report.errors == 0, fig.errors
    assert report.double_matches == 0
    assert report.run.at_stop["unfinished_pilots"] == 0
    assert not report.not_done(), list(report.not_done().items())[:10]
    assert len(fig.done) >= 50 and fig.heartbeats >= 100, (len(fig.done), fig.heartbeats)
    assert report.db["statuses"].get("Done", 0) == len(fig.done)
    # both groups saturated: the 70/30 shares hold within 4.5 standard deviations
    matched = sum(report.run.at_stop["by_group"].values())
    assert abs(report.share() - 0.7) <= 4.5 * math.sqrt(0.21 / matched), report.share()
