"""The claim policy, a pure function: what a worker claims in one transaction given ranks, pools'
room, and its free and idle threads. Examples first, then properties over random inputs."""
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_engine.claims import choose, ranked


def pick(ranks, pools=None, *, wanted=(), room=None, free=10, idle=10, bar=None):
    pools = pools or {}
    return choose(list(ranks), rank=ranks.get, pool_of=pools.get, wanted=wanted, room=room or {}, free=free,
                  idle=idle, bar=bar)


def test_the_best_ranked_tracks_are_claimed_up_to_the_free_threads():
    c = pick({1: 1.0, 2: 5.0, 3: 3.0, 4: 5.0}, free=2)
    assert (c.claim, c.rest, c.aside, c.more) == ([2, 4], [3, 1], [], False)  # ties: the lower id first


def test_a_pools_track_is_claimed_within_its_room_and_only_for_an_idle_thread():
    ranks = {1: 9.0, 2: 8.0, 3: 7.0, 4: 1.0}
    pools = {1: "db", 2: "db", 3: "db"}
    c = pick(ranks, pools, wanted={"db"}, room={"db": 2}, free=6, idle=6)
    assert (c.claim, c.aside) == ([1, 2, 4], [3])  # the third of the pool waits: its room is 2
    # one idle thread: one track of the pool, and what ranks below waits for a thread
    c = pick(ranks, pools, wanted={"db"}, room={"db": 2}, free=6, idle=1)
    assert (c.claim, c.rest, c.aside) == ([1], [2, 3, 4], [])


def test_below_a_full_pool_nothing_is_queued_beyond_the_idle_threads():
    c = pick({1: 9.0, 2: 5.0, 3: 4.0, 4: 3.0}, {1: "db"}, wanted={"db"}, room={"db": 0}, free=6, idle=2)
    assert (c.claim, c.aside, c.rest, c.more) == ([2, 3], [1], [4], True)  # more: room for others, look again
    # a track set aside earlier (its rank is the bar) holds back what ranks below it the same way
    c = pick({2: 5.0, 3: 4.0, 4: 3.0}, free=6, idle=1, bar=6.0)
    assert (c.claim, c.rest) == ([2], [3, 4])


def test_a_track_of_a_pool_not_locked_stops_the_claim_there_and_asks_for_another_batch_at_once():
    c = pick({1: 9.0, 2: 8.0, 3: 1.0}, {2: "gpu"}, wanted=set(), free=6, idle=6)
    assert (c.claim, c.rest, c.more) == ([1], [2, 3], True)


def test_nothing_free_claims_nothing():
    c = pick({1: 1.0, 2: 2.0}, free=0, idle=0)
    assert (c.claim, c.rest) == ([], [2, 1])
    c = pick({1: 1.0}, free=-3, idle=-1)  # more in flight than slots (a stop): still nothing
    assert c.claim == []


tracks = st.dictionaries(st.integers(1, 60), st.sampled_from([0.0, 1.0, 2.5, 7.0, 9.0]), max_size=25)
pool_names = st.sampled_from(["a", "b", "c"])


@settings(max_examples=400, deadline=None)
@given(ranks=tracks, data=st.data(), free=st.integers(-2, 12), idle=st.integers(-2, 6),
       bar=st.one_of(st.none(), st.sampled_from([0.0, 2.5, 9.0])))
def test_properties_of_every_choice(ranks, data, free, idle, bar):
    pools = data.draw(st.dictionaries(st.sampled_from(sorted(ranks) or [0]), pool_names))
    pools = {t: p for t, p in pools.items() if t in ranks}
    wanted = data.draw(st.sets(pool_names))
    room = data.draw(st.dictionaries(pool_names, st.integers(-1, 4)))
    c = choose(list(ranks), rank=ranks.get, pool_of=pools.get, wanted=wanted, room=room, free=free, idle=idle,
               bar=bar)
    order = ranked(ranks, ranks.get)
    # every known track is claimed, or waits, exactly once
    assert sorted(c.claim + c.rest + c.aside) == sorted(ranks)
    # never more than the free slots; a pool's tracks never beyond its room, never from a pool not locked,
    # and only for idle threads
    assert len(c.claim) <= max(free, 0)
    for pool in {"a", "b", "c"}:
        mine = [t for t in c.claim if pools.get(t) == pool]
        assert len(mine) <= max(room.get(pool, 0), 0)
        assert not mine or pool in wanted
    pooled_at = [i for i, t in enumerate(c.claim) if t in pools]
    assert all(i < max(idle, 0) for i in pooled_at)
    # claims follow the ranks: nothing left in rest ranks before a claimed track
    last_claim = max((order.index(t) for t in c.claim), default=-1)
    assert all(order.index(t) > last_claim for t in c.rest)
    # below a full pool's track (or the bar) at most the idle threads' worth is claimed
    for t in c.aside:
        assert len(c.claim) <= max(max(idle, 0), sum(1 for u in c.claim if order.index(u) < order.index(t)))
    if bar is not None:
        below = [t for t in c.claim if ranks[t] <= bar]
        assert not below or len(c.claim) <= max(max(idle, 0), len(c.claim) - len(below))
    # the lists keep the rank order
    for part in (c.claim, c.rest, c.aside):
        assert part == [t for t in order if t in set(part)]
