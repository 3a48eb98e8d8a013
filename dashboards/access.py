"""What each token may see: one function decides, deny by default.

Resources a client may ask for with ``{"type": "subscribe", "resource": ...}`` (a token also gets its
own default on connecting):

- ``board:{scope}:{id}:{role}`` -- a league board of the current season (scope ``centre``, ``region``,
  ``state`` or ``nation`` with id ``all``; role a role or ``all``);
- ``awards:{staff id}`` -- a person's award notifications;
- ``alerts:{region or centre id}`` -- the SLA alerts of those centres.

Who may see what:

| token | boards | awards | alerts |
|---|---|---|---|
| kiosk C | C's centre, region, state and the nation | none | none |
| technician S | S's centre | S's own | none |
| manager M (region or centre) | M's centres; M's region board if M is a region | none | M's centres, or fewer |
"""

from __future__ import annotations

from dataclasses import dataclass

from config.directory import Directory
from dashboards.tokens import Claims
from state.league import SCOPES, scope_ids
from streams.contract import ROLES

MAX_RESOURCE_CHARS = 200


class ResourceError(ValueError):
    """The resource named is not one the gateway serves (a malformed name, an unknown scope or role)."""


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str  # board, awards, alerts
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return ":".join((self.kind, *self.parts))


def parse_resource(raw: object) -> Resource:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_RESOURCE_CHARS:
        raise ResourceError("'resource' must be a string such as board:centre:C01:all")
    kind, *parts = raw.split(":")
    if kind == "board" and len(parts) == 3:
        scope, _, role = parts
        if scope not in SCOPES:
            raise ResourceError(f"unknown board scope {scope!r} (one of: {', '.join(SCOPES)})")
        if role != "all" and role not in ROLES:
            raise ResourceError(f"unknown role {role!r} (all, or one of: {', '.join(ROLES)})")
        return Resource(kind, tuple(parts))
    if kind in ("awards", "alerts") and len(parts) == 1 and parts[0]:
        return Resource(kind, tuple(parts))
    raise ResourceError(f"unknown resource {raw[:60]!r} (board:SCOPE:ID:ROLE, awards:STAFF or alerts:SCOPE)")


def _boards_of_centre(directory: Directory, centre_id: str) -> set[tuple[str, str]]:
    centre = directory.centre(centre_id)
    if centre is None:
        return set()
    return set(scope_ids(centre.id, centre.region, centre.state).items())


def allowed(claims: Claims, resource: Resource, directory: Directory) -> bool:
    """Whether ``claims`` may see ``resource``. Anything not granted here is refused."""
    if resource.kind == "board":
        scope, scope_id, _ = resource.parts
        if claims.kind == "kiosk":
            return (scope, scope_id) in _boards_of_centre(directory, claims.subject)
        if claims.kind == "technician":
            person = directory.person(claims.subject)
            return person is not None and (scope, scope_id) == ("centre", person.centre_id)
        if claims.kind == "manager":
            centres = directory.managed_centres(claims.subject)
            return (scope == "centre" and scope_id in centres) or (
                scope == "region" and scope_id == claims.subject and claims.subject not in directory.centres
            )
        return False
    if resource.kind == "awards":
        return claims.kind == "technician" and resource.parts[0] == claims.subject
    if resource.kind == "alerts":
        if claims.kind != "manager":
            return False
        wanted = directory.managed_centres(resource.parts[0])
        return bool(wanted) and wanted <= directory.managed_centres(claims.subject)
    return False
