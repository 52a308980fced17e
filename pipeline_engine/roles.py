"""Who may do what through the API: four roles, each allowed everything the one before it is.
Pure: no database.

- ``viewer`` reads everything (never a secret value: none is stored);
- ``operator`` also starts runs of sealed graphs, cancels and retries runs;
- ``editor`` also imports, edits, checks, seals, copies and deletes graphs and sets pools;
- ``admin`` also manages tokens and runs recovery and pruning.
"""
from __future__ import annotations

import enum

from pipeline_engine.errors import ValidationError


class Role(str, enum.Enum):
    #: reads graphs, runs, logs, workers, pools
    viewer = "viewer"
    #: starts runs of sealed graphs, cancels and retries runs
    operator = "operator"
    #: defines graphs (import, edit, check, seal, copy, delete) and pools
    editor = "editor"
    #: manages tokens, recovers and prunes
    admin = "admin"

    @property
    def rank(self) -> int:
        return ROLES.index(self)

    def allows(self, needed: Role) -> bool:
        """This role may do what ``needed`` may."""
        return self.rank >= needed.rank


ROLES: tuple[Role, ...] = (Role.viewer, Role.operator, Role.editor, Role.admin)
NAMES: tuple[str, ...] = tuple(r.value for r in ROLES)


def parse(word: str) -> Role:
    """The role ``word`` names; ValidationError naming the roles otherwise."""
    try:
        return Role(word)
    except ValueError:
        raise ValidationError(f"unknown role {word!r}: expected one of {', '.join(NAMES)}") from None
