"""Who may do what: roles, the identity -> role mapping from the settings, and the one check.

Three roles, each including the ones before it:

| role       | may                                                               |
|------------|-------------------------------------------------------------------|
| `analyst`  | read cases, claim, decide (single cases and rings)                |
| `reviewer` | + blind second reviews and adjudication                           |
| `admin`    | + train / retrain, promote, roll back, ingest events and labels   |

The mapping is `SLEUTH_ROLES` (analyst/config.py): entries `identity=role` or `group:NAME=role`,
separated by commas or semicolons, identities and groups compared without case, e.g.
`lea@shop.example=admin; group:fraud-leads=reviewer`. A signed-in identity matched by no entry
gets `SLEUTH_DEFAULT_ROLE` (default `analyst`; `none` refuses unmapped identities). A *local
operator* - the CLI, scripts, the app in local mode (no sign-in configured) - is the person who
owns the DuckDB file and is `admin` unless the mapping names them.

The use cases (analyst/service/) call `require` before they write anything, so a page that showed
a button by mistake still cannot promote a model for an analyst.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

ROLES: tuple[str, ...] = ("analyst", "reviewer", "admin")
NO_ROLE = "none"
LOCAL_ROLE = "admin"

_ENTRY = re.compile(r"^\s*(?P<who>[^=]+?)\s*=\s*(?P<role>[A-Za-z]+)\s*$")


def check_role(role: str, where: str) -> str:
    """`role` lower-cased if it is one of ROLES, else ValueError naming `where`."""
    value = str(role).strip().lower()
    if value not in ROLES:
        raise ValueError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    return value


@dataclass(frozen=True)
class Actor:
    """Someone acting in sleuth: the name recorded on their rows, their role and how they are
    known (`login`: signed in through the identity provider; `local`: the local operator)."""
    name: str
    role: str
    how: str = "local"

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class RoleMap:
    """The settings' identity/group -> role mapping (see the module docstring)."""
    identities: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    default: str = "analyst"   # a role, or NO_ROLE

    @classmethod
    def parse(cls, text: str | None, default: str | None = None) -> "RoleMap":
        """Parse `SLEUTH_ROLES` / `SLEUTH_DEFAULT_ROLE`; ValueError names the bad entry."""
        identities: dict[str, str] = {}
        groups: dict[str, str] = {}
        for raw in re.split(r"[;,\n]", text or ""):
            if not raw.strip():
                continue
            m = _ENTRY.match(raw)
            if not m:
                raise ValueError(f"SLEUTH_ROLES entry {raw.strip()!r}: expected identity=role or group:NAME=role")
            who, role = m.group("who").strip().lower(), check_role(m.group("role"), f"SLEUTH_ROLES entry {raw.strip()!r}")
            if who.startswith("group:"):
                groups[who[len("group:"):].strip()] = role
            else:
                identities[who] = role
        fallback = (default or "analyst").strip().lower()
        if fallback != NO_ROLE:
            fallback = check_role(fallback, "SLEUTH_DEFAULT_ROLE")
        return cls(identities=identities, groups=groups, default=fallback)

    def role_of(self, identity: str, groups: tuple[str, ...] | list[str] = (), *,
                unmapped: str | None = None) -> str | None:
        """The highest role the mapping gives `identity` or any of its `groups`; when none
        does, `unmapped` (default: the mapping's default). None means no role."""
        found = [self.identities.get(identity.strip().lower())]
        found += [self.groups.get(str(g).strip().lower()) for g in groups]
        roles = [r for r in found if r]
        if roles:
            return max(roles, key=ROLES.index)
        fallback = self.default if unmapped is None else unmapped
        return None if fallback == NO_ROLE else fallback

    def signed_in(self, identity: str, groups: tuple[str, ...] | list[str] = ()) -> Actor | None:
        """The Actor of an identity the provider vouched for; None when it has no role."""
        role = self.role_of(identity, groups)
        return None if role is None else Actor(identity, role, "login")

    def local(self, name: str) -> Actor:
        """The local operator `name` (CLI, scripts, local-mode app): admin unless mapped."""
        return Actor(name, self.role_of(name, unmapped=LOCAL_ROLE) or LOCAL_ROLE, "local")


def require(actor: Actor, role: str, action: str) -> None:
    """PermissionError (one line: who, their role, what `action` needs) unless `actor` has `role`."""
    if not actor.can(role):
        raise PermissionError(f"{actor.name} ({actor.role}) may not {action}: it needs the {role} role; "
                              "nothing was written")
