"""Look-ups in the configured registry of users, groups, VOs and hosts.

Built once from :class:`~core.config.schema.RegistryConfig` with indexes, so that the per-request
mapping of a DN or a token subject to a user and group is a dictionary look-up.

Example::

    >>> from core.config.schema import RegistryConfig
    >>> reg = Registry(RegistryConfig.model_validate({
    ...     "VOs": {"demo": {"DefaultGroup": "demo_user"}},
    ...     "Users": {"alice": {"DNs": ["/O=pilotwms/CN=alice"]}},
    ...     "Groups": {"demo_user": {"VO": "demo", "Users": ["alice"]}},
    ... }))
    >>> reg.user_for_dn("/O=pilotwms/CN=alice"), reg.default_group("alice")
    ('alice', 'demo_user')
"""

from __future__ import annotations

from core.config.schema import GroupConfig, HostConfig, RegistryConfig


class Registry:
    """Indexed, read-only view of the registry section."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self._dn_user = {dn: name for name, u in config.users.items() for dn in u.dns}
        self._dn_host = {h.dn: name for name, h in config.hosts.items()}
        self._subject_user = {
            (ts.issuer.rstrip("/"), ts.subject): name
            for name, u in config.users.items()
            for ts in u.token_subjects
        }
        self._user_groups: dict[str, list[str]] = {}
        for gname, group in config.groups.items():
            for user in group.users:
                self._user_groups.setdefault(user, []).append(gname)

    def user_for_dn(self, dn: str) -> str | None:
        return self._dn_user.get(dn)

    def host_for_dn(self, dn: str) -> tuple[str, HostConfig] | None:
        name = self._dn_host.get(dn)
        return None if name is None else (name, self.config.hosts[name])

    def user_for_subject(self, issuer: str, subject: str) -> str | None:
        return self._subject_user.get((issuer.rstrip("/"), subject))

    def has_user(self, name: str) -> bool:
        return name in self.config.users

    def dns_of(self, user: str) -> list[str]:
        conf = self.config.users.get(user)
        return list(conf.dns) if conf else []

    def groups_of(self, user: str) -> list[str]:
        return list(self._user_groups.get(user, ()))

    def group(self, name: str) -> GroupConfig | None:
        return self.config.groups.get(name)

    def is_member(self, user: str, group: str) -> bool:
        return group in self._user_groups.get(user, ())

    def default_group(self, user: str, vo: str | None = None) -> str | None:
        """The group a user gets when the credential names none.

        Order: the VO's DefaultGroup, the registry's DefaultGroup (when the user is in them),
        then the user's only group (or the first, in config order) in that VO.
        """
        groups = self.groups_of(user)
        if vo is not None:
            groups = [g for g in groups if self.config.groups[g].vo == vo]
        candidates = []
        if vo is not None and vo in self.config.vos:
            candidates.append(self.config.vos[vo].default_group)
        else:
            candidates.extend(v.default_group for v in self.config.vos.values())
        candidates.append(self.config.default_group)
        for cand in candidates:
            if cand is not None and cand in groups:
                return cand
        return groups[0] if groups else None
