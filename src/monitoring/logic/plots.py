"""Plots of reports with matplotlib (headless Agg): PNG or SVG.

* ``bars``: stacked bars over time (jobs by site per hour or day);
* ``cumulative``: stacked areas rising over time;
* ``quality``: one line per group, in the report's unit (CPU/wall efficiency in %);
* ``pie``: totals per group (CPU by user).

At most :data:`MAX_GROUPS` groups are drawn (the largest); the rest are summed as "Others".
:func:`draw` returns the image and the series *read back from the drawn artists* (bar
heights, line points, wedge fractions), so callers and tests can check what the picture shows,
not only that a file exists.

Example::

    >>> report = {"kind": "pie", "title": "CPU", "grouping": "User", "unit": "s",
    ...           "data": {"alice": 3.0, "bob": 1.0}, "start": None, "end": None}
    >>> plot = draw(report, "svg")
    >>> plot.image[:5], plot.series
    (b'<?xml', {'alice': 0.75, 'bob': 0.25})
    >>> embedded_series(plot.image)["series"] == plot.series
    True
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from core.exceptions import InvalidArgumentError  # noqa: E402

FORMATS = ("png", "svg")
MAX_GROUPS = 15


@dataclass
class Plot:
    image: bytes
    format: str
    #: group -> drawn values (bars, lines: per interval in time order; pie: fraction)
    series: dict[str, Any]


def _ordered(data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The groups, largest first, the tail folded into "Others"."""
    def size(item: tuple[str, Any]) -> float:
        value = item[1]
        return float(value) if kind == "pie" else float(sum(value.values()) if value else 0)

    items = sorted(data.items(), key=lambda kv: (-size(kv), kv[0]))
    if len(items) <= MAX_GROUPS or kind == "quality":
        return dict(items[:MAX_GROUPS] if kind == "quality" else items)
    head, tail = items[:MAX_GROUPS - 1], items[MAX_GROUPS - 1:]
    if kind == "pie":
        return {**dict(head), "Others": sum(float(v) for _, v in tail)}
    others: dict[int, float] = {}
    for _, series in tail:
        for slot, value in series.items():
            others[slot] = others.get(slot, 0.0) + value
    return {**dict(head), "Others": others}


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float).tolist()]


def _when(slot: Any) -> datetime:
    return datetime.fromtimestamp(int(slot), timezone.utc)


def draw(report: Mapping[str, Any], fmt: str = "png") -> Plot:
    """Draw ``report`` (:func:`monitoring.logic.reports.build_report`) as ``fmt``."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"plot format must be one of {', '.join(FORMATS)}")
    kind = str(report["kind"])
    data = _ordered(report["data"], kind)
    fig = Figure(figsize=(10, 6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    series: dict[str, Any] = {}
    title = f"{report['title']} by {report['grouping']}"
    if report.get("start") and report.get("end"):
        span = (f"{report['start']:%Y-%m-%d %H:%M} to {report['end']:%Y-%m-%d %H:%M} UTC")
        title += f"\n{span}"
    ax.set_title(title)
    if kind == "pie":
        labels = [g for g, v in data.items() if float(v) > 0]
        values = [float(data[g]) for g in labels]
        if values:
            wedges, _ = ax.pie(values, labels=labels, startangle=90, counterclock=False)
            for label, wedge in zip(labels, wedges, strict=True):
                series[label] = round(float(abs(wedge.theta2 - wedge.theta1)) / 360.0, 6)
        ax.axis("equal")
    else:
        slots = sorted({int(s) for values in data.values() for s in values})
        times = [float(mdates.date2num(_when(s))) for s in slots]
        gran = float(report.get("granularity") or 3600)
        width = gran / 86400 * 0.9  # matplotlib dates are in days
        bottom = [0.0] * len(slots)
        for group, values in data.items():
            ys = [float(values.get(s, values.get(str(s), 0.0))) for s in slots]
            if kind == "bars":
                bars = ax.bar(times, ys, width=width, bottom=bottom, label=group,
                              align="edge")
                series[group] = [round(float(p.get_height()), 6) for p in bars.patches]
                bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
            elif kind == "cumulative":
                tops = [b + y for b, y in zip(bottom, ys, strict=True)]
                ax.fill_between(times, bottom, tops, step="post", label=group, alpha=0.8)
                line, = ax.step(times, tops, where="post", linewidth=0.8)
                drawn = _floats(line.get_ydata())
                series[group] = [round(t - b, 6) for t, b in zip(drawn, bottom, strict=True)]
                bottom = tops
            else:  # quality: a line per group where it has a value
                points = [(t, y) for t, s, y in zip(times, slots, ys, strict=True)
                          if s in values or str(s) in values]
                if points:
                    line, = ax.plot([p[0] for p in points], [p[1] for p in points],
                                    marker="o", label=group)
                    series[group] = [round(v, 6) for v in _floats(line.get_ydata())]
        ax.xaxis_date()
        ax.set_ylabel(str(report.get("unit", "")))
        ax.set_xlabel("time (UTC)")
        fig.autofmt_xdate()
        if data:
            ax.legend(loc="upper left", fontsize="small", ncol=2)
    # the drawn series travel in the file too (PNG tEXt / SVG dc:description), so whoever
    # holds the image can check what it shows
    described = json.dumps({"report": report.get("report"), "kind": kind,
                            "grouping": report["grouping"], "series": series},
                           sort_keys=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, bbox_inches="tight",
                metadata={"Creator": "pilotwms", "Title": str(report["title"]),
                          "Description": described})
    return Plot(buffer.getvalue(), fmt, series)


def embedded_series(image: bytes) -> dict[str, Any]:
    """What :func:`draw` wrote into a PNG or SVG (``{"series": ..., "kind": ...}``)."""
    if image.startswith(b"\x89PNG"):
        pos = 8
        while pos + 8 <= len(image):
            length = int.from_bytes(image[pos:pos + 4], "big")
            kind = image[pos + 4:pos + 8]
            body = image[pos + 8:pos + 8 + length]
            if kind == b"tEXt" and body.startswith(b"Description\0"):
                return dict(json.loads(body.split(b"\0", 1)[1].decode("latin-1")))
            pos += 12 + length
        raise ValueError("no pilotwms description in this PNG")
    text = image.decode("utf-8")
    start = text.find("<dc:description>")
    end = text.find("</dc:description>", start)
    if start < 0 or end < 0:
        raise ValueError("no pilotwms description in this SVG")
    return dict(json.loads(html.unescape(text[start + len("<dc:description>"):end])))
