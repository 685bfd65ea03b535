"""The worker pool (common/runtime.py's in_parallel), tested where it is written."""

import threading
import time

import pytest

from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.runtime import WORKERS, in_parallel


class Budget:
    def __init__(self, low_after):
        self.calls, self.low_after = 0, low_after

    def low(self):
        self.calls += 1
        return self.calls > self.low_after


def test_in_parallel_runs_workers_at_once_and_stops_starting_when_time_is_short():
    running, most = [0], [0]
    lock = threading.Lock()

    def work(item):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    started, stopped = in_parallel(range(20), work, Budget(low_after=10), print)
    assert (started, stopped) == (10, 0)
    assert most[0] == WORKERS


def test_in_parallel_reads_a_generator_only_as_far_as_it_starts_work():
    read = []

    def items():
        for n in range(100):
            read.append(n)
            yield n

    in_parallel(items(), lambda item: None, Budget(low_after=5), print)
    assert len(read) == 5  # five started; the sixth was never read: time was short


def test_in_parallel_counts_out_of_time_and_any_other_exception_fails_that_item_only():
    def out_of_time(item):
        raise OutOfTime("late")

    assert in_parallel(range(3), out_of_time, Budget(99), print) == (3, 3)

    done, failed = [], []

    def broken_on_one(item):
        if item == 1:
            raise KeyError(item)  # a bug of ours, on one odd item
        done.append(item)

    started = in_parallel(range(4), broken_on_one, Budget(99), lambda *f: failed.append(f))
    assert started == (4, 0) and sorted(done) == [0, 2, 3]
    assert [(item, type(exc)) for item, exc in failed] == [(1, KeyError)]


def test_in_parallel_raises_a_failure_it_could_not_record_once_the_rest_is_done():
    done = []

    def broken_recorder(item, exc):
        raise RuntimeError("recording broke")

    def work(item):
        if item == 2:
            raise KeyError(item)
        done.append(item)

    with pytest.raises(RuntimeError, match="recording broke"):
        in_parallel(range(5), work, Budget(99), broken_recorder)
    assert sorted(done) == [0, 1, 3, 4]


def test_in_parallel_raises_what_reading_the_items_raised_once_the_started_work_is_over():
    done = []

    def items():
        yield from range(3)
        raise ValueError("the listing broke")

    with pytest.raises(ValueError, match="listing broke"):
        in_parallel(items(), lambda item: done.append(item), Budget(99), print)
    assert sorted(done) == [0, 1, 2]
