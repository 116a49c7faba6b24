"""Services and their explicitly registered RPC methods.

A service is a class with a ``system`` and a ``name`` (its URL is ``/<system>/<name>``) whose
methods are exported with :func:`rpc_method`, giving the wire name (DIRAC's camelCase) and the
default access rules. Methods take a :class:`Call` (who is calling, and with what) and then the
positional arguments from the request's ``args``. They return a value or raise a
:class:`~core.exceptions.PilotWMSError`; the envelope is made by the server, never here.

Argument types are checked against the method's annotations before the call (``int``, ``str``,
``float``, ``bool``, ``list``, ``dict``, ``bytes``, ``datetime``, unions and ``X | None``;
``list[X]`` and ``dict[K, V]`` have their items checked too, nested ones in turn:
``dict[str, str | list[str]]``), so bad input is answered with a clear
:class:`~core.exceptions.InvalidArgumentError`, not a crash. Integers
must fit in 64 bits (signed), what every database column holds; the decoder
(:mod:`core.rpc.jencode`) has already bounded nesting, sizes and nested integers.

Blocking methods (plain ``def``) run in the server's thread pool; ``async def`` methods run on
the IOLoop and must not block.

Example::

    >>> class Greeter(Service):
    ...     system, name = "Demo", "Greeter"
    ...     @rpc_method("sayHello", rights="all")
    ...     def say_hello(self, call: Call, who: str) -> str:
    ...         return f"hello {who}"
    >>> sorted(Greeter.methods())
    ['echo', 'ping', 'sayHello', 'whoami']
    >>> Greeter.methods()["sayHello"].check_args(["x"])
    >>> Greeter.methods()["sayHello"].check_args([1])
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidArgumentError: sayHello: argument 1 ('who') must be str, not int
"""

from __future__ import annotations

import inspect
import os
import socket
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from core.exceptions import InvalidArgumentError
from core.security.identity import Identity
from core.security.rights import Rule, parse_rules
from core.version import __version__

if TYPE_CHECKING:
    from core.rpc.context import ServerContext

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Call:
    """What a method knows about the request it serves."""

    identity: Identity
    request_id: str
    client_vo: str | None = None
    client_setup: str | None = None
    remote_ip: str | None = None
    raw_content: bool = False
    url: str | None = None


@dataclass
class Reply:
    """A successful value with extra top-level keys, as DIRAC puts ``JobID`` beside ``Value``."""

    value: Any
    extra: dict[str, Any] = field(default_factory=dict)


_SIMPLE: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (float, int),
    str: (str,),
    bool: (bool,),
    bytes: (bytes,),
    list: (list, tuple),
    tuple: (list, tuple),
    dict: (dict,),
    datetime: (datetime,),
    date: (date,),
    Any: (object,),
    object: (object,),
}


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _type_name(value: Any) -> str:
    return type(value).__name__


def _fits(value: Any, accepted: tuple[type, ...]) -> bool:
    """``value`` is an instance of ``accepted`` (a bool is not an int unless bool is named)."""
    if not isinstance(value, accepted):
        return False
    return not (isinstance(value, bool) and bool not in accepted and object not in accepted)


@dataclass(frozen=True)
class Items:
    """What the items of a container must be: ``accepted`` types (None too when
    ``nullable``), with their own items checked in turn (``list[str | list[str]]``)."""

    container: tuple[type, ...]
    accepted: tuple[type, ...]
    nullable: bool
    items: tuple[Items, ...] = ()


def _item_checks(annotation: Any) -> tuple[Items, ...]:
    """The item checks of ``annotation``'s containers (``list[X]``, ``dict[K, V]``, in a
    union too): one per parameterised container whose items are not ``Any``."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else (annotation,)
    out = []
    for member in members:
        origin = typing.get_origin(member)
        params = typing.get_args(member)
        container: tuple[type, ...]
        if origin in (list, tuple) and len(params) == 1:
            item, container = params[0], (list, tuple)
        elif origin is dict and len(params) == 2:
            item, container = params[1], (dict,)
        else:
            continue
        accepted, nullable = _accepted(item)
        if object not in accepted:
            out.append(Items(container, accepted, nullable, _item_checks(item)))
    return tuple(out)


def _accepted(annotation: Any) -> tuple[tuple[type, ...], bool]:
    """(accepted types, None allowed) for an annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        accepted: tuple[type, ...] = ()
        nullable = False
        for arg in typing.get_args(annotation):
            if arg is type(None):
                nullable = True
                continue
            sub, sub_null = _accepted(arg)
            accepted += sub
            nullable = nullable or sub_null
        return accepted, nullable
    if origin is not None:
        annotation = origin
    if annotation in _SIMPLE:
        return _SIMPLE[annotation], False
    if isinstance(annotation, type):
        return (annotation,), False
    return (object,), True


@dataclass(frozen=True)
class Param:
    name: str
    accepted: tuple[type, ...]
    nullable: bool
    required: bool
    variadic: bool = False
    #: item checks by container type (nested containers checked in turn)
    items: tuple[Items, ...] = ()

    def check(self, method: str, index: int, value: Any) -> None:
        where = f"{method}: argument {index} ({self.name!r})"
        if value is None:
            if self.nullable:
                return
        elif _fits(value, self.accepted):
            if isinstance(value, int) and not isinstance(value, bool) \
                    and not INT64_MIN <= value <= INT64_MAX:
                raise InvalidArgumentError(f"{where}: {value} does not fit in 64 bits")
            self._check_items(where, value)
            return
        wanted = " or ".join(sorted({t.__name__ for t in self.accepted}))
        raise InvalidArgumentError(f"{where} must be {wanted}, not {_type_name(value)}")

    def _check_items(self, where: str, value: Any) -> None:
        _check_items(where, value, self.items)


def _check_items(where: str, value: Any, checks: tuple[Items, ...]) -> None:
    """The items of ``value`` against the check of its container kind, recursively."""
    for check in checks:
        if not isinstance(value, check.container):
            continue
        held: Any = value
        values: Iterable[Any] = held.values() if isinstance(held, dict) else held
        for item in values:
            if item is None and check.nullable:
                continue
            if item is None or not _fits(item, check.accepted):
                wanted = " or ".join(sorted({t.__name__ for t in check.accepted}))
                raise InvalidArgumentError(
                    f"{where}: items must be {wanted}, not {_type_name(item)}")
            if check.items:
                _check_items(where, item, check.items)
        return


@dataclass
class MethodSpec:
    """One exported method: wire name, function, default rules and parameter checks."""

    wire_name: str
    func: Callable[..., Any]
    rights: tuple[Rule, ...]
    params: list[Param] = field(default_factory=list)
    is_async: bool = False
    #: the method returns bytes to send raw when the client asks for rawContent
    raw: bool = False

    def check_args(self, args: list[Any]) -> None:
        fixed = [p for p in self.params if not p.variadic]
        variadic = next((p for p in self.params if p.variadic), None)
        required = sum(1 for p in fixed if p.required)
        if len(args) < required or (variadic is None and len(args) > len(fixed)):
            upto = f"{required}" if required == len(fixed) else f"{required} to {len(fixed)}"
            if variadic is not None:
                upto = f"at least {required}"
            raise InvalidArgumentError(
                f"{self.wire_name} takes {upto} argument(s), {len(args)} given"
            )
        for index, value in enumerate(args):
            param = fixed[index] if index < len(fixed) else variadic
            assert param is not None  # noqa: S101 - length checked above
            param.check(self.wire_name, index + 1, value)


def rpc_method(
    wire_name: str | None = None,
    *,
    rights: str | list[str] = "authenticated",
    raw: bool = False,
) -> Callable[[F], F]:
    """Export a service method under ``wire_name`` (default: the Python name) with ``rights``."""

    def decorate(func: F) -> F:
        func.__rpc_export__ = (wire_name or func.__name__, rights, raw)  # type: ignore[attr-defined]
        return func

    return decorate


def _build_spec(func: Callable[..., Any], wire_name: str, rights: Any, raw: bool) -> MethodSpec:
    hints = typing.get_type_hints(func)
    sig = inspect.signature(func)
    params: list[Param] = []
    for pname, param in list(sig.parameters.items())[2:]:  # skip self, call
        annotation = hints.get(pname, Any)
        accepted, nullable = _accepted(annotation)
        params.append(
            Param(
                name=pname,
                accepted=accepted,
                nullable=nullable or param.default is None,
                required=param.default is inspect.Parameter.empty
                and param.kind is not inspect.Parameter.VAR_POSITIONAL,
                variadic=param.kind is inspect.Parameter.VAR_POSITIONAL,
                items=_item_checks(annotation),
            )
        )
    return MethodSpec(
        wire_name=wire_name,
        func=func,
        rights=parse_rules(rights),
        params=params,
        is_async=inspect.iscoroutinefunction(func),
        raw=raw,
    )


class Service:
    """Base class of every service; subclasses set ``system`` and ``name``.

    One instance per server process serves every request, so instances hold no per-request
    state; anything shared across processes lives in the database.
    """

    system: ClassVar[str] = ""
    name: ClassVar[str] = ""
    _methods: ClassVar[dict[str, MethodSpec]]

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.started = datetime.now(timezone.utc)
        self._started_monotonic = time.monotonic()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._methods = {}

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        """``(period in seconds, blocking function)`` pairs the server runs periodically in
        its thread pool, in every worker process (so they must be safe to run concurrently:
        sweeps that re-check state in a transaction). Override to add some; none by default.
        """
        return []

    def startup_tasks(self) -> list[Callable[[], None]]:
        """Blocking functions the server runs once in its thread pool as soon as it serves,
        in every worker process (same rules as :meth:`background_tasks`): repairs of what a
        crash of an earlier server left, so that they need not wait for the first period of a
        sweep. A failing one is retried (database unreachable) or logged. None by default."""
        return []

    def stop(self) -> None:
        """Finish the work queued in this process before it stops (e.g. write the reports a
        write-behind queue holds), then refuse more; blocking. Called once the server takes
        no new connections, and again by :meth:`ServerContext.close`: must be idempotent.
        Nothing by default."""

    def extra_routes(self, hosted: Any, balancers: Sequence[Any]) -> list[Any]:
        """Tornado routes beside ``POST /<system>/<name>`` (e.g. a streaming upload), as
        ``(pattern, handler, kwargs)``; ``hosted`` is this service's ``HostedService``. None by
        default."""
        return []

    @classmethod
    def path(cls) -> str:
        return f"{cls.system}/{cls.name}"

    @classmethod
    def methods(cls) -> dict[str, MethodSpec]:
        """Wire name -> spec, including the built-ins; computed once per class."""
        if not cls._methods:
            found: dict[str, MethodSpec] = {}
            for klass in reversed(cls.__mro__):
                for attr in vars(klass).values():
                    export = getattr(attr, "__rpc_export__", None)
                    if export is None:
                        continue
                    wire, rights, raw = export
                    found[wire] = _build_spec(attr, wire, rights, raw)
            cls._methods = found
        return cls._methods

    # -- built-ins on every service ------------------------------------------------------------

    @rpc_method("ping", rights="all")
    def ping(self, call: Call) -> dict[str, Any]:
        """Version, time, host and service uptime, load, name, CPU times (DIRAC's keys)."""
        with open("/proc/uptime") as stream:
            host_uptime = int(float(stream.read().split()[0]))
        cpu = os.times()
        return {
            "version": __version__,
            "time": datetime.now(timezone.utc),
            "host uptime": host_uptime,
            "service start time": self.started,
            "service uptime": int(time.monotonic() - self._started_monotonic),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "name": self.path(),
            "URL": call.url,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "cpu times": {
                "user time": cpu.user,
                "system time": cpu.system,
                "children user time": cpu.children_user,
                "children system time": cpu.children_system,
                "elapsed real time": cpu.elapsed,
            },
        }

    @rpc_method("echo", rights="all")
    def echo(self, call: Call, *values: Any) -> Any:
        """Returns its argument (or the list of them when several are given)."""
        return values[0] if len(values) == 1 else list(values)

    @rpc_method("whoami", rights="authenticated")
    def whoami(self, call: Call) -> dict[str, Any]:
        return call.identity.whoami()
