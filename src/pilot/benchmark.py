"""A short CPU benchmark in the manner of DIRAC's DB12, standard library only.

DB12 draws 12.5 million normal variates per iteration (1 kHS2k.s, i.e. 250 HS06 seconds) and
reports ``250 x iterations / CPU seconds``. A pilot cannot spend the 10-30 s that takes, so
:func:`db12` runs a fraction (``scale``) of one iteration after a warm-up fraction, and scales
the calibration the same way: the score is the same quantity measured over a shorter time
(noisier on a loaded node). Like DB12 on Python 3.10+, no per-version correction is applied.

The score is used as the node's ``CPUNormalizationFactor``, the HS23 factor per core of the
accounting (HS23 was calibrated to equal HS06 on the reference machine, and DB12 to follow
HS06): normalised CPU = factor x CPU seconds. A site that publishes its HS23 per core passes it
with ``--cpu-normalization-factor`` and no benchmark runs.

Example::

    >>> result = db12(scale=0.002)
    >>> result["UNIT"], result["NORM"] > 0, result["ITERATIONS"]
    ('DB12', True, 25000)
"""

from __future__ import annotations

import os
import random
from typing import Any

#: DB12's draws per iteration and their calibration (HS06 seconds)
DRAWS = 12_500_000
CALIBRATION = 250.0
#: default fraction of a DB12 iteration: about a quarter of a CPU second on a current core
DEFAULT_SCALE = 0.02


def _draw(count: int, rng: random.Random) -> float:
    m_1 = m_2 = 0.0
    for _ in range(count):
        value = rng.normalvariate(10, 1)
        m_1 += value
        m_2 += value * value
    return m_1 + m_2


def db12(scale: float = DEFAULT_SCALE) -> dict[str, Any]:
    """``{"CPU": s, "WALL": s, "NORM": score, "UNIT": "DB12", "ITERATIONS": draws}``."""
    if not 0 < scale <= 1:
        raise ValueError("scale must be in (0, 1]")
    draws = max(1000, int(DRAWS * scale))
    rng = random.Random()  # noqa: S311 - a benchmark, not cryptography
    _draw(draws // 10, rng)  # warm-up (DB12 ignores its first iteration for CPU ramp-up)
    start = os.times()
    _draw(draws, rng)
    end = os.times()
    cpu = (end.user + end.system) - (start.user + start.system)
    wall = end.elapsed - start.elapsed
    cpu = max(cpu, 1e-3)  # os.times() ticks at 10 ms
    norm = CALIBRATION * (draws / DRAWS) / cpu
    return {"CPU": round(cpu, 3), "WALL": round(wall, 3), "NORM": round(norm, 2),
            "UNIT": "DB12", "ITERATIONS": draws}
