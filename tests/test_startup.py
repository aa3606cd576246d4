"""t2i.startup.paused_gc: the collector paused for loading, its state restored, new objects filed as old."""

import gc
import weakref

import pytest

from t2i.startup import paused_gc


class Node:  # a container object the cyclic collector tracks
    pass


def in_generation(obj, generation: int) -> bool:
    return any(o is obj for o in gc.get_objects(generation=generation))


def test_the_collector_is_paused_inside_and_running_after():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        made = Node()
    assert gc.isenabled()
    # made inside: filed under the oldest generation, not left young for the next collection to walk
    assert in_generation(made, 2) and not in_generation(made, 0)
    young = Node()
    assert not in_generation(young, 2)  # outside the block objects start young as usual


def test_state_is_restored_on_error_and_a_paused_collector_stays_paused():
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("loading failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # it was off before: not switched on behind the program's back
    finally:
        gc.enable()


def is_tracked(obj) -> bool:
    """In one of the collector's generations; a frozen object is in none of them."""
    return any(o is obj for o in gc.get_objects())


def test_objects_the_program_froze_stay_frozen():
    kept = Node()
    gc.freeze()
    try:
        assert not is_tracked(kept)
        with paused_gc():
            made = Node()
        # no unfreeze of the program's own frozen objects. (Not checked by gc.get_freeze_count: frozen
        # objects that die meanwhile, in this thread or another, lower the count.)
        assert not is_tracked(kept)
        assert not in_generation(made, 2)  # and so no filing either
    finally:
        gc.unfreeze()


def test_cyclic_garbage_made_inside_is_still_collected():
    with paused_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    assert alive() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert alive() is None
