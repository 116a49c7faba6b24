"""The built-in plugins: Standard, BySize, ByRunNumber/ByMetadata, BySE, Broadcast, ByShare.

Each is a small class; see :mod:`transformation.plugins` for the interface. Files come sorted
by catalog file ID (registration order), so groupings are deterministic.

Example::

    >>> from transformation.plugins import Context, PluginFile
    >>> files = [PluginFile(1, "/a", meta={"run": 7}), PluginFile(2, "/b", meta={"run": 8}),
    ...          PluginFile(3, "/c", meta={"run": 7})]
    >>> plugin = ByMetadata(Context(group_size=2, params={"MetaKey": "run"}))
    >>> [t.file_ids for t in plugin.group(files, flush=True).tasks]
    [[1, 3], [2]]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from transformation.plugins import Grouping, Plugin, PluginFile, TaskSpec

GB = 1_000_000_000


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v
                                                      for v in value):
        raise ValueError(f"{what} must be a list of SE names")
    return list(value)


class Standard(Plugin):
    """Tasks of ``GroupSize`` files in registration order; the rest waits unless flushing."""

    name = "Standard"

    def group(self, files: Sequence[PluginFile], flush: bool) -> Grouping:
        return Grouping(self.chunks([f.file_id for f in files], flush))


class BySize(Plugin):
    """Tasks of files adding up to ``GroupSize`` GB (or ``MaxSize`` bytes); a file bigger than
    that is a task of its own; the last, smaller group waits unless flushing."""

    name = "BySize"
    needs_size = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any], group_size: float,
                     target_ses: Sequence[str]) -> None:
        size = params.get("MaxSize")
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float))
                                 or size <= 0):
            raise ValueError("MaxSize must be a positive number of bytes")

    def group(self, files: Sequence[PluginFile], flush: bool) -> Grouping:
        limit = float(self.ctx.params.get("MaxSize") or self.ctx.group_size * GB)
        out: list[TaskSpec] = []
        current: list[int] = []
        total = 0
        for f in files:
            current.append(f.file_id)
            total += f.size
            full = self.ctx.max_files and len(current) >= self.ctx.max_files
            if total >= limit or full:
                out.append(TaskSpec(current))
                current, total = [], 0
        if current and flush:
            out.append(TaskSpec(current))
        return Grouping(out)


class ByMetadata(Plugin):
    """Files with one value of ``MetaKey`` stay together: tasks of ``GroupSize`` files of a
    single value (the last one of each value waits unless flushing); files without a value
    are left for later."""

    name = "ByMetadata"
    default_key = ""

    @classmethod
    def check_params(cls, params: Mapping[str, Any], group_size: float,
                     target_ses: Sequence[str]) -> None:
        key = params.get("MetaKey", cls.default_key)
        if not isinstance(key, str) or not key:
            raise ValueError("MetaKey must name a metadata field")

    @classmethod
    def meta_keys(cls, params: Mapping[str, Any]) -> list[str]:
        return [str(params.get("MetaKey", cls.default_key))]

    def group(self, files: Sequence[PluginFile], flush: bool) -> Grouping:
        key = str(self.ctx.params.get("MetaKey", self.default_key))
        by_value: dict[Any, list[int]] = defaultdict(list)
        for f in files:
            value = f.meta.get(key)
            if value is not None:
                by_value[value].append(f.file_id)
        out: list[TaskSpec] = []
        for value in sorted(by_value, key=lambda v: (str(type(v)), v)):
            out.extend(self.chunks(by_value[value], flush))
        return Grouping(out)


class ByRunNumber(ByMetadata):
    """:class:`ByMetadata` on ``RunNumber`` (or ``MetaKey``)."""

    name = "ByRunNumber"
    default_key = "RunNumber"


class BySE(Plugin):
    """Files grouped by the SE holding them (the SE most of the candidates share first);
    each task goes to that SE's site. Files without replicas wait."""

    name = "BySE"
    needs_ses = True

    def group(self, files: Sequence[PluginFile], flush: bool) -> Grouping:
        popularity = Counter(se for f in files for se in set(f.ses))
        by_se: dict[str, list[int]] = defaultdict(list)
        for f in files:
            if f.ses:
                best = max(sorted(set(f.ses)), key=lambda se: popularity[se])
                by_se[best].append(f.file_id)
        out: list[TaskSpec] = []
        for se in sorted(by_se):
            out.extend(self.chunks(by_se[se], flush, target_se=se,
                                   site=self.ctx.se_sites.get(se, "")))
        return Grouping(out)


def _targets(params: Mapping[str, Any], target_ses: Sequence[str]) -> list[str]:
    given = params.get("TargetSE")
    return _names(given, "TargetSE") if given else list(target_ses)


class Broadcast(Plugin):
    """Data operations: one task per file and target SE that does not hold it yet, for files
    with a replica on a source SE (``SourceSE``; any SE when not given). Files already at
    every target need nothing and are set Processed."""

    name = "Broadcast"
    needs_ses = True

    @classmethod
    def check_params(cls, params: Mapping[str, Any], group_size: float,
                     target_ses: Sequence[str]) -> None:
        if not _targets(params, target_ses):
            raise ValueError("Broadcast needs target SEs (TargetSE)")
        if params.get("SourceSE"):
            _names(params["SourceSE"], "SourceSE")

    def group(self, files: Sequence[PluginFile], flush: bool) -> Grouping:
        targets = _targets(self.ctx.params, self.ctx.target_ses)
        sources = set(_names(self.ctx.params["SourceSE"], "SourceSE")) if \
            self.ctx.params.get("SourceSE") else None
        out = Grouping()
        for f in files:
            held = set(f.ses)
            if not held or (sources is not None and not held & sources):
                continue
            missing = [se for se in targets if se not in held]
            if not missing:
                out.processed.append(f.file_id)
            for se in missing:
                out.tasks.append(TaskSpec([f.file_id], target_se=se))
        return out


class ByShare(Plugin):
    """Files split across target SEs by ``Shares`` (``{SE: weight}``): each file goes to the
    SE furthest below its share, counting what earlier tasks already sent (so the split holds
    over the transformation's life, to one file); tasks of ``GroupSize`` files per SE."""

    name = "ByShare"

    @classmethod
    def check_params(cls, params: Mapping[str, Any], group_size: float,
                     target_ses: Sequence[str]) -> None:
        shares = params.get("Shares")
        if not isinstance(shares, Mapping) or not shares:
            raise ValueError("Shares must be a non-empty {SE: share} mapping")
        for se, share in shares.items():
            if not isinstance(se, str) or isinstance(share, bool) or \
                    not isinstance(share, (int, float)) or share < 0:
                raise ValueError(f"Shares: bad share {se!r}: {share!r}")
        if not sum(shares.values()):
            raise ValueError("Shares must not all be 0")

    def group(self, files: Sequence[PluginFile], flush: bool) -> Grouping:
        shares = {str(k): float(v) for k, v in dict(self.ctx.params["Shares"]).items()}
        total_share = sum(shares.values())
        counts = {se: int(self.ctx.history.get(se, 0)) for se in shares}
        assigned = sum(counts.values())
        by_se: dict[str, list[int]] = defaultdict(list)
        for f in files:
            assigned += 1
            se = max(sorted(shares),
                     key=lambda s: shares[s] / total_share * assigned - counts[s])
            counts[se] += 1
            by_se[se].append(f.file_id)
        out: list[TaskSpec] = []
        for se in sorted(by_se):
            out.extend(self.chunks(by_se[se], flush, target_se=se))
        return Grouping(out)
