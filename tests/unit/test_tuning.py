from __future__ import annotations

import gc
import sys

from addons.tuning import GIL_SWITCH_INTERVAL, freeze_startup_heap, share_gil_promptly


class _Compiled:
    value = "at start"


def test_start_up_objects_leave_the_collectors_reach():
    survivor = _Compiled()  # tracked by the collector, like most start-up objects
    assert gc.is_tracked(survivor)
    try:
        frozen = freeze_startup_heap()
        assert frozen > 0
        assert frozen == gc.get_freeze_count()
        # Frozen objects are not in any generation a collection walks.
        assert not any(o is survivor for o in gc.get_objects())
        assert survivor.value == "at start"  # still alive and usable
    finally:
        gc.unfreeze()
    assert any(o is survivor for o in gc.get_objects())


def test_the_loop_gets_the_gil_back_within_a_millisecond():
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # CPython's default; in-process sidecars may have run
        share_gil_promptly()
        assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL <= 0.001
    finally:
        sys.setswitchinterval(before)
