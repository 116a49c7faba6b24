"""Plugins: how a transformation's unused files are grouped into tasks.

A plugin is a small class (subclass of :class:`Plugin`) found through the entry point group
``pilotwms.transformation_plugins`` (a VO adds its own in its package's metadata). The
:class:`~transformation.agents.transformation_agent.TransformationAgent` hands it the unused
files with what it asked for from the catalog (sizes, replica SEs, metadata values) and stores
the tasks it returns. Plugins are pure: no database, no network, so their grouping is tested
on plain lists.

Example::

    >>> plugin = load_plugin("Standard")(Context(group_size=2))
    >>> files = [PluginFile(i, f"/demo/f{i}") for i in range(1, 6)]
    >>> [t.file_ids for t in plugin.group(files, flush=False).tasks]
    [[1, 2], [3, 4]]
    >>> [t.file_ids for t in plugin.group(files, flush=True).tasks]
    [[1, 2], [3, 4], [5]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, ClassVar

ENTRY_POINT_GROUP = "pilotwms.transformation_plugins"


_NO_META: Mapping[str, Any] = MappingProxyType({})


class PluginFile:
    """One unused file: catalog ID, LFN, size, replica SEs (when the plugin sets
    ``needs_ses``), metadata values (the keys of :meth:`Plugin.meta_keys`). A plain slotted
    class: hundreds of thousands are made per cycle."""

    __slots__ = ("file_id", "lfn", "meta", "ses", "size")

    def __init__(self, file_id: int, lfn: str, size: int = 0, ses: Sequence[str] = (),
                 meta: Mapping[str, Any] = _NO_META) -> None:
        self.file_id = file_id
        self.lfn = lfn
        self.size = size
        self.ses = ses
        self.meta = meta

    def __repr__(self) -> str:
        return f"PluginFile({self.file_id}, {self.lfn!r}, size={self.size})"


@dataclass
class TaskSpec:
    file_ids: list[int]
    target_se: str = ""
    site: str = ""


@dataclass
class Grouping:
    tasks: list[TaskSpec] = field(default_factory=list)
    #: files with nothing left to do (e.g. already at every target SE): set Processed
    processed: list[int] = field(default_factory=list)


@dataclass
class Context:
    """What a plugin knows of its transformation and of the resources."""

    group_size: float = 1
    params: Mapping[str, Any] = field(default_factory=dict)
    #: maximum files per task (0: no limit beyond the plugin's own)
    max_files: int = 0
    target_ses: Sequence[str] = ()
    #: SE name -> site name (Resources.Sites.<site>.SEs)
    se_sites: Mapping[str, str] = field(default_factory=dict)
    #: files already sent to each target SE by earlier tasks (for ByShare)
    history: Mapping[str, int] = field(default_factory=dict)


class Plugin:
    """Base class: override :meth:`group`; set ``needs_size``/``needs_ses``; override
    :meth:`check_params` to refuse bad parameters and :meth:`meta_keys` to get metadata."""

    name: ClassVar[str] = ""
    needs_size: ClassVar[bool] = False
    needs_ses: ClassVar[bool] = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @classmethod
    def check_params(cls, params: Mapping[str, Any], group_size: float,
                     target_ses: Sequence[str]) -> None:
        """Raise ValueError naming the bad parameter."""

    @classmethod
    def meta_keys(cls, params: Mapping[str, Any]) -> list[str]:
        return []

    @property
    def chunk(self) -> int:
        """Files per task: the group size, capped by ``max_files``."""
        size = max(1, int(self.ctx.group_size))
        return min(size, self.ctx.max_files) if self.ctx.max_files else size

    def group(self, files: Sequence[PluginFile], flush: bool) -> Grouping:
        raise NotImplementedError

    def chunks(self, file_ids: Sequence[int], flush: bool, **spec: Any) -> list[TaskSpec]:
        """Tasks of :attr:`chunk` files; a last smaller one only when ``flush``."""
        out = []
        size = self.chunk
        for start in range(0, len(file_ids), size):
            part = list(file_ids[start:start + size])
            if len(part) == size or flush:
                out.append(TaskSpec(part, **spec))
        return out


def available_plugins() -> dict[str, type[Plugin]]:
    """Plugin name -> class, from the entry point group."""
    found: dict[str, type[Plugin]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return found


def load_plugin(name: str) -> type[Plugin]:
    """The plugin class called ``name``; ValueError naming the known ones otherwise."""
    plugins = available_plugins()
    if name not in plugins:
        raise ValueError(f"unknown plugin {name!r} (known: {', '.join(sorted(plugins))})")
    return plugins[name]
