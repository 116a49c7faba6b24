"""The grouping of every built-in plugin, on plain lists (plugins touch no database)."""

from __future__ import annotations

import pytest

from transformation.plugins import Context, PluginFile, available_plugins, load_plugin
from transformation.plugins.builtin import GB


def files(n: int, **kw: object) -> list[PluginFile]:
    return [PluginFile(i, f"/demo/f{i}", **kw) for i in range(1, n + 1)]  # type: ignore[arg-type]


def group(name: str, items: list[PluginFile], flush: bool = False, **ctx: object
          ) -> list[tuple[list[int], str, str]]:
    plugin = load_plugin(name)(Context(**ctx))  # type: ignore[arg-type]
    return [(t.file_ids, t.target_se, t.site) for t in plugin.group(items, flush).tasks]


def test_plugins_come_from_the_entry_point_group() -> None:
    assert {"Standard", "BySize", "ByRunNumber", "ByMetadata", "BySE", "Broadcast",
            "ByShare"} <= set(available_plugins())
    with pytest.raises(ValueError, match="unknown plugin 'Nope'"):
        load_plugin("Nope")


def test_standard_groups_by_group_size_and_respects_flush() -> None:
    assert [t[0] for t in group("Standard", files(7), group_size=3)] == [[1, 2, 3], [4, 5, 6]]
    assert [t[0] for t in group("Standard", files(7), True, group_size=3)][-1] == [7]
    assert [t[0] for t in group("Standard", files(4), group_size=3, max_files=2)] == \
        [[1, 2], [3, 4]]


def test_by_size_fills_tasks_up_to_the_size() -> None:
    sizes = [400_000_000, 700_000_000, 2 * GB, 300_000_000, 100_000_000]
    items = [PluginFile(i + 1, f"/f{i}", size=s) for i, s in enumerate(sizes)]
    assert [t[0] for t in group("BySize", items, group_size=1)] == [[1, 2], [3]]
    assert [t[0] for t in group("BySize", items, True, group_size=1)] == [[1, 2], [3], [4, 5]]
    assert [t[0] for t in group("BySize", items, params={"MaxSize": 350_000_000})] == \
        [[1], [2], [3], [4, 5]]


def test_by_run_number_keeps_a_run_together() -> None:
    runs = [7, 8, 7, 7, None, 8]
    items = [PluginFile(i + 1, f"/f{i}", meta={} if r is None else {"RunNumber": r})
             for i, r in enumerate(runs)]
    assert [t[0] for t in group("ByRunNumber", items, group_size=2)] == [[1, 3], [2, 6]]
    assert [t[0] for t in group("ByRunNumber", items, True, group_size=2)] == \
        [[1, 3], [4], [2, 6]]
    by_key = [PluginFile(1, "/a", meta={"period": "b"}), PluginFile(2, "/b", meta={"period": "a"})]
    assert [t[0] for t in group("ByMetadata", by_key, True, group_size=5,
                                params={"MetaKey": "period"})] == [[2], [1]]


def test_by_se_groups_by_where_the_files_are_and_sends_the_task_there() -> None:
    items = [PluginFile(1, "/a", ses=["DISK-A"]), PluginFile(2, "/b", ses=["DISK-B"]),
             PluginFile(3, "/c", ses=["DISK-A", "DISK-B"]), PluginFile(4, "/d", ses=["DISK-A"]),
             PluginFile(5, "/e", ses=[])]
    got = group("BySE", items, True, group_size=10,
                se_sites={"DISK-A": "LCG.There.org", "DISK-B": "LCG.Here.org"})
    assert got == [([1, 3, 4], "DISK-A", "LCG.There.org"), ([2], "DISK-B", "LCG.Here.org")]


def test_broadcast_one_task_per_file_and_missing_target() -> None:
    items = [PluginFile(1, "/a", ses=["SRC"]), PluginFile(2, "/b", ses=["SRC", "T1"]),
             PluginFile(3, "/c", ses=["OTHER"]), PluginFile(4, "/d", ses=["SRC", "T1", "T2"])]
    plugin = load_plugin("Broadcast")(Context(target_ses=["T1", "T2"],
                                              params={"SourceSE": ["SRC"]}))
    result = plugin.group(items, False)
    assert [(t.file_ids, t.target_se) for t in result.tasks] == [
        ([1], "T1"), ([1], "T2"), ([2], "T2")]
    assert result.processed == [4]  # already everywhere; file 3 has no source replica
    with pytest.raises(ValueError, match="TargetSE"):
        load_plugin("Broadcast").check_params({}, 1, [])


def test_by_share_splits_10k_files_within_two_percent() -> None:
    shares = {"DISK-A": 50, "DISK-B": 30, "DISK-C": 20}
    tasks = group("ByShare", files(10_000), True, group_size=10, params={"Shares": shares})
    counts = {se: 0 for se in shares}
    for ids, se, _site in tasks:
        counts[se] += len(ids)
        assert len(ids) <= 10
    assert sum(counts.values()) == 10_000
    for se, share in shares.items():
        assert abs(counts[se] / 10_000 * 100 - share) <= 2, counts
    # over several cycles the history keeps the split: 100 more files after 1,000 all on A
    later = group("ByShare", files(100), True, group_size=100, params={"Shares": shares},
                  history={"DISK-A": 1000, "DISK-B": 0, "DISK-C": 0})
    assert {se for _ids, se, _site in later} == {"DISK-B"}  # the furthest below its share
    with pytest.raises(ValueError, match="Shares"):
        load_plugin("ByShare").check_params({"Shares": {"A": -1}}, 1, [])
