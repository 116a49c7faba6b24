"""``Framework/Registry``: what the registry says about the caller and about users.

Clients use it to list the groups a user may pick (``dinit``/``dlogin --group``) and to check
their configuration; it reads only the configuration, never a database.

Example::

    >>> sorted(RegistryService.methods())[:4]
    ['echo', 'getGroupsForUser', 'getMyGroups', 'getVOs']
"""

from __future__ import annotations

from typing import Any

from core.exceptions import NotAuthorizedError, NotFoundError
from core.rpc.service import Call, Service, rpc_method


class RegistryService(Service):
    system = "Framework"
    name = "Registry"

    @rpc_method("getVOs", rights="all")
    def get_vos(self, call: Call) -> list[str]:
        return sorted(self.ctx.config.registry.vos)

    @rpc_method("getMyGroups", rights="authenticated")
    def get_my_groups(self, call: Call) -> dict[str, Any]:
        """The caller's groups with their VO and properties."""
        return self._groups_of(call.identity.username or "")

    @rpc_method("getGroupsForUser", rights=["JobAdministrator", "Operator", "TrustedHost"])
    def get_groups_for_user(self, call: Call, username: str) -> dict[str, Any]:
        if not self.ctx.authenticator.registry.has_user(username):
            raise NotFoundError(f"No user {username} in the registry")
        return self._groups_of(username)

    def _groups_of(self, username: str) -> dict[str, Any]:
        registry = self.ctx.authenticator.registry
        if not registry.has_user(username):
            raise NotAuthorizedError("hosts have no groups")
        result = {}
        for name in registry.groups_of(username):
            group = registry.group(name)
            assert group is not None  # noqa: S101 - groups_of returns configured groups
            result[name] = {"VO": group.vo, "Properties": sorted(group.properties)}
        return result
