"""``dacct``: accounting and monitoring reports, as tables or plots.

``dacct WHAT`` where WHAT is ``jobs``, ``pilots``, ``transfers``, ``history`` (WMS history),
``pilotshistory`` or ``components`` (or a type name: ``Job``, ``WMSHistory``, ...). Options
pick the report (``-r``, default the type's main one; ``--list`` shows them), the grouping
(``--group-by``), the period (``--from``/``--to``: ``YYYY-MM-DD[ HH:MM]``, or ``7d``/``12h``
ago; default the last 7 days), the interval (``--granularity hour|day|week``) and
the selection (``--status``, ``--user``, ``--site``, ``--where FIELD=V1,V2``). The table is
printed as ``pretty`` (default: one row per interval, one column per group, and a Total),
``csv`` or ``json`` (``-f``: one row per group and interval); ``--plot FILE.png|FILE.svg``
also draws it: stacked bars over time, pies, cumulative areas or efficiency lines, by the
report's kind.

Example::

    dacct jobs --group-by Site --from 2026-12-01 --to 2026-12-08 --status Failed
    dacct jobs -r TotalCPUUsed --group-by User --plot cpu.svg
    dacct jobs -r CPUEfficiency --group-by Site -f csv
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from core.cli.common import run
from core.exceptions import InvalidArgumentError
from monitoring.client import MonitoringClient
from monitoring.logic import plots
from monitoring.logic.reports import ALIASES, GRANULARITIES, REPORTS, report_grid, report_rows
from monitoring.types import TYPES, as_utc, record_type
from wms.cli._common import FORMATS, format_table, value_text

#: what --status, --site and --user select, per type
STATUS_FIELD = {"Job": "FinalMajorStatus", "Pilot": "GridStatus",
                "DataOperation": "FinalStatus", "WMSHistory": "Status",
                "PilotsHistory": "Status"}
SITE_FIELD = {"Job": "Site", "Pilot": "Site", "WMSHistory": "Site",
              "PilotsHistory": "GridSite"}
RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)([dhm])$")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dacct", description="Accounting and monitoring reports.")
    p.add_argument("what", help="jobs, pilots, transfers, history, pilotshistory, components "
                                "(or a type name)")
    p.add_argument("-r", "--report", help="report name (see --list)")
    p.add_argument("-g", "--group-by", dest="group_by", default="",
                   help="key field to group by (default: no grouping, one total)")
    p.add_argument("--from", dest="start",
                   help="start (YYYY-MM-DD[ HH:MM] UTC, or 7d, 12h, 30m ago)")
    p.add_argument("--to", dest="end", help="end (default: now)")
    p.add_argument("--granularity", choices=sorted(GRANULARITIES),
                   help="interval of time series (default by the period)")
    p.add_argument("--status", help="final status (comma-separated)")
    p.add_argument("--user", help="owner (comma-separated)")
    p.add_argument("--site", help="site (comma-separated)")
    p.add_argument("--where", action="append", default=[], metavar="FIELD=V1,V2",
                   help="any key field")
    p.add_argument("-f", "--Fmt", dest="fmt", default="pretty",
                   help="table format (" + ", ".join(FORMATS) + ")")
    p.add_argument("--plot", type=Path, help="draw the report into FILE.png or FILE.svg")
    p.add_argument("--list", action="store_true",
                   help="list the type's reports and key fields, then exit")
    return p


def parse_time(text: str | None, default: datetime, now: datetime) -> datetime:
    """``YYYY-MM-DD[ HH:MM[:SS]]`` (UTC) or ``<n>d|h|m`` (or ``-<n>d``) before now."""
    if not text:
        return default
    match = RELATIVE.match(text.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        seconds = {"d": 86400, "h": 3600, "m": 60}[unit]
        return now - timedelta(seconds=amount * seconds)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise InvalidArgumentError(f"bad time {text!r}: use YYYY-MM-DD[ HH:MM] or 7d (ago)")


def resolve(what: str) -> tuple[str, str]:
    """(type name, default report) of a command word or type name."""
    if what.lower() in ALIASES:
        return ALIASES[what.lower()]
    rtype = record_type(what)
    if rtype.name not in REPORTS:
        raise InvalidArgumentError(f"no reports for {rtype.name}")
    return rtype.name, next(iter(REPORTS[rtype.name]))


def filters_of(opts: argparse.Namespace, type_name: str) -> dict[str, list[str]]:
    rtype = TYPES[type_name]
    out: dict[str, list[str]] = {}

    def add(field: str | None, value: str | None, option: str) -> None:
        if not value:
            return
        if field is None or field not in rtype.keys:
            raise InvalidArgumentError(f"{option} does not apply to {type_name}")
        out.setdefault(field, []).extend(v.strip() for v in value.split(",") if v.strip())

    add(STATUS_FIELD.get(type_name), opts.status, "--status")
    add(SITE_FIELD.get(type_name), opts.site, "--site")
    add("User" if "User" in rtype.keys else None, opts.user, "--user")
    for item in opts.where:
        field, sep, values = item.partition("=")
        if not sep:
            raise InvalidArgumentError(f"--where {item!r}: use FIELD=V1,V2")
        add(field.strip(), values, f"--where {field.strip()}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dacct`` command (console script); returns the exit status."""
    return run(_main, argv)


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    fmt = opts.fmt.lower()
    format_table([], ["x"], fmt)  # a bad format is refused before any call
    type_name, default_report = resolve(opts.what)
    if opts.list:
        with MonitoringClient() as client:
            keys = client.key_values(type_name)
        print(f"{type_name} reports:")
        for name, spec in REPORTS[type_name].items():
            print(f"  {name:28s} {spec.title} ({spec.kind})")
        print("key fields: " + ", ".join(f"{k} ({len(v)} values)" for k, v in keys.items()))
        return 0
    report_name = opts.report or default_report
    plot_format = None
    if opts.plot is not None:
        plot_format = opts.plot.suffix.lower().lstrip(".")
        if plot_format not in plots.FORMATS:
            raise InvalidArgumentError("--plot needs a .png or .svg file name")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    end = parse_time(opts.end, now, now)
    start = parse_time(opts.start, end - timedelta(days=7), now)
    filters = filters_of(opts, type_name)
    granularity = GRANULARITIES[opts.granularity] if opts.granularity else None
    with MonitoringClient() as client:
        report = client.report(type_name, report_name, start, end, grouping=opts.group_by,
                               filters=filters, granularity=granularity)
    report["start"], report["end"] = as_utc(report["start"]), as_utc(report["end"])
    if report["kind"] != "pie":
        report["data"] = {g: {int(k): v for k, v in series.items()}
                          for g, series in report["data"].items()}
    headers, rows = report_rows(report)
    if fmt == "pretty":  # for people: one row per interval, one column per group
        grid_headers, grid = report_grid(report)
        print(f"{report['title']} by {report['grouping']} ({report['unit']}), "
              f"{value_text(start)} to {value_text(end)} UTC")
        print(format_table(grid, grid_headers, fmt).rstrip("\n"))
    elif fmt == "json":
        print(json.dumps({"type": type_name, "report": report_name,
                          "grouping": report["grouping"], "unit": report["unit"],
                          "granularity": report["granularity"], "totals": report["totals"],
                          "rows": json.loads(format_table(rows, headers, "json"))}))
    else:
        print(format_table(rows, headers, fmt).rstrip("\n"))
    if opts.plot is not None and plot_format is not None:
        drawn = plots.draw(report, plot_format)
        opts.plot.write_bytes(drawn.image)
        print(f"{report['title']} by {report['grouping']}: plot written to {opts.plot}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
