"""Pure: which pending tracks a worker claims in one transaction.

The worker knows some pending tracks (its ready queue, the successors it just released, what a
look in the database found), their ranks (critical-path priority) and pools; the transaction
has locked the pools it may claim from (``wanted``) and counted their room. ``choose`` decides:

- highest rank first (ties: the lower track id), at most ``free`` tracks (threads plus the
  attempts queued ahead of them);
- a track of a pool only within the pool's room, only for a thread idle now (``idle``: it must
  not hold a slot while queued behind other work), and only from a pool this transaction
  locked; one found by the look in a pool not locked stops the claim there (the next
  transaction, at once, locks that pool first);
- below a track of a full pool (found full now, or set aside before: ``bar``, the best rank set
  aside) nothing is queued ahead: at most ``idle`` claims, so that a thread is free when its
  pool frees a slot.

What is not claimed is returned as ``rest`` (known pending: back to the ready queue) or
``aside`` (its pool is full: kept apart until a slot may be free)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class Choice:
    #: the tracks to claim, best first
    claim: list[int] = field(default_factory=list)
    #: known pending, not claimed now, in rank order
    rest: list[int] = field(default_factory=list)
    #: their pool is full
    aside: list[int] = field(default_factory=list)
    #: something could have been claimed in a next transaction at once (look again now)
    more: bool = False


def ranked(tracks: Iterable[int], rank: Callable[[int], float]) -> list[int]:
    """The tracks best first: highest rank, then lowest id."""
    return sorted(tracks, key=lambda t: (-rank(t), t))


def choose(known: Iterable[int], *, rank: Callable[[int], float], pool_of: Callable[[int], str | None],
           wanted: Iterable[str], room: Mapping[str, int], free: int, idle: int,
           bar: float | None = None) -> Choice:
    """Split ``known`` pending tracks into what to claim now and what waits (see the module)."""
    free, idle = max(free, 0), max(idle, 0)
    wanted, room = set(wanted), dict(room)
    out = Choice()
    held_up = False
    cap = free
    for track_id in ranked(known, rank):
        pool = pool_of(track_id)
        if bar is not None and rank(track_id) <= bar:
            cap = min(cap, idle)
        if held_up or len(out.claim) >= cap:
            out.rest.append(track_id)
        elif pool is None:
            out.claim.append(track_id)
        elif pool not in wanted:  # its pool is locked first in the next transaction, which comes
            held_up = True        # at once; what ranks below it waits for that one
            out.rest.append(track_id)
            out.more = True
        elif room.get(pool, 0) <= 0:
            out.aside.append(track_id)  # its pool is full (or gone); what ranks below it is not
            cap = min(cap, idle)        # queued ahead: a thread must come free for it
        elif len(out.claim) >= idle:
            held_up = True
            out.rest.append(track_id)
        else:
            room[pool] -= 1
            out.claim.append(track_id)
    if out.aside and len(out.claim) < free:
        out.more = True  # what can run besides a full pool's tracks: look again at once
    return out
