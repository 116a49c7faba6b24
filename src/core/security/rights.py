"""Per-method access rules: who may call what.

A rule is one of:

* ``all`` (or DIRAC's ``any``): anyone, even without credentials;
* ``authenticated``: any registered identity with a valid group;
* a property name (``NormalUser``, ``GenericPilot``, ``JobAdministrator``, ``TrustedHost``, ...);
* ``group:<name>`` or ``vo:<name>``.

A method's rules are alternatives: any one that holds grants access. Rules come from the method's
registration and are overridden by ``Systems.<S>.Services.<Svc>.Authorization.<method>`` and then
``...Authorization.Default`` in the configuration, as DIRAC does.

Example::

    >>> from core.security.identity import Identity
    >>> ident = Identity(auth_method="x509", username="bob", group="g", vo="v", valid_dn=True,
    ...                  valid_group=True, properties=frozenset({"NormalUser"}))
    >>> allowed(ident, parse_rules(["JobAdministrator", "vo:v"]))
    True
    >>> allowed(ident, parse_rules("JobAdministrator"))
    False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.exceptions import ConfigError
from core.security.identity import Identity

ALL = "all"
AUTHENTICATED = "authenticated"


@dataclass(frozen=True)
class Rule:
    kind: str  # "all", "authenticated", "property", "group", "vo"
    value: str = ""

    def holds(self, ident: Identity) -> bool:
        if self.kind == ALL:
            return True
        if not ident.authenticated:
            return False
        if self.kind == AUTHENTICATED:
            return True
        if self.kind == "property":
            return self.value in ident.properties
        if self.kind == "group":
            return ident.group == self.value
        return ident.vo == self.value  # "vo"


def parse_rule(text: str) -> Rule:
    text = text.strip()
    if not text:
        raise ConfigError("empty access rule")
    lowered = text.lower()
    if lowered in ("all", "any"):
        return Rule(ALL)
    if lowered == AUTHENTICATED:
        return Rule(AUTHENTICATED)
    for prefix in ("group:", "vo:"):
        if lowered.startswith(prefix):
            value = text[len(prefix):].strip()
            if not value:
                raise ConfigError(f"access rule {text!r} names no {prefix[:-1]}")
            return Rule(prefix[:-1], value)
    if ":" in text or " " in text:
        raise ConfigError(f"unknown access rule {text!r}")
    return Rule("property", text)


def parse_rules(rules: str | Iterable[str]) -> tuple[Rule, ...]:
    """Parse one rule, a comma-separated string, or a list of rules."""
    items = rules.split(",") if isinstance(rules, str) else list(rules)
    parsed = tuple(parse_rule(item) for item in items)
    if not parsed:
        raise ConfigError("a method needs at least one access rule")
    return parsed


def allowed(ident: Identity, rules: Iterable[Rule]) -> bool:
    return any(rule.holds(ident) for rule in rules)
