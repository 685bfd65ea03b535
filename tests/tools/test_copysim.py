"""testkit/copysim.py (issue 16): a small day of copies through the real copier, and the
measures it reports. The numbers for 2,000 primaries are from `testkit/copysim.py` itself."""

import heapq
import json
from datetime import UTC, datetime

import pytest
from conftest import DEST, make_snapshot, snapshots

import ebs_snapshot_copier as copier
from testkit import copysim

SMALL = {"primaries": 60, "window_hours": 0.5, "seed": 3}


@pytest.fixture(scope="module")
def day():
    return {name: copysim.simulate(**SMALL, scenario=name) for name in ("today", "stay")}


def most_in_flight(timeline):
    """The most copies pending at once, from the copies' own start and end times."""
    ends, most = [], 0
    for _, start, end, _ in sorted(timeline, key=lambda row: row[1]):
        while ends and ends[0] <= start:
            heapq.heappop(ends)
        heapq.heappush(ends, end)
        most = max(most, len(ends))
    return most


@pytest.mark.parametrize("name", ["today", "stay"])
def test_every_primary_is_copied_once_without_a_21st_slot(day, name):
    result = day[name]
    assert result["copies_per_primary"] == {1: SMALL["primaries"]}  # moto's own state
    assert result["copies_completed"] == SMALL["primaries"] and result["duplicates"] == 0
    assert result["failures"] == 0 and result["failure_messages"] == []
    assert result["refused_21st_slot"] == 0 and result["peak_in_flight"] <= copier.COPIES_IN_FLIGHT
    assert most_in_flight(result["timeline"]) <= copier.COPIES_IN_FLIGHT
    for completed, started, ended, _ in result["timeline"]:
        assert completed <= started < ended  # never copied before its primary completed
    assert 0 <= result["slot_utilisation_while_waiting"] <= 1
    assert 0 <= result["slot_utilisation_overall"] <= 1


def test_staying_keeps_the_slots_busier_and_the_last_copy_waits_less(day):
    today, stay = day["today"], day["stay"]
    assert stay["slot_utilisation_while_waiting"] >= today["slot_utilisation_while_waiting"]
    assert stay["slot_utilisation_while_waiting"] >= 0.9  # issue 16's target
    assert stay["last_copy"]["wait_h"] < today["last_copy"]["wait_h"]
    assert today["stays"] == 0 and stay["stays"] > 0
    # a stay ends before the next quarter-hour sweep is due
    assert stay["stay_overrun_max_s"] < 3 * 60
    assert today["invocations"]["notification"] == SMALL["primaries"]


def test_today_sweeps_half_hourly_from_six_and_stay_every_quarter_hour():
    first = datetime(2026, 11, 26, tzinfo=UTC)
    until = datetime(2026, 11, 27, tzinfo=UTC)
    today = list(copysim.cron_times(copysim.SCENARIOS["today"]["schedule"], first, until))
    assert len(today) == 36 and (today[0].hour, today[-1].hour, today[-1].minute) == (6, 23, 30)
    stay = list(copysim.cron_times(copysim.SCENARIOS["stay"]["schedule"], first, until))
    assert len(stay) == 96 and stay[1].minute == 15
    with pytest.raises(ValueError):
        list(copysim.cron_times("cron(0 2 ? * MON *)", first, until))


def test_the_fast_describe_answers_as_moto_does():
    small = {"primaries": 25, "window_hours": 0.25, "seed": 5, "scenario": "stay"}
    fast, moto = copysim.simulate(**small), copysim.simulate(**small, fast=False)
    assert fast["timeline"] == moto["timeline"]
    assert fast["api_calls"] == moto["api_calls"]


def test_without_reserved_concurrency_runs_overlap_and_still_copy_once():
    result = copysim.simulate(primaries=40, window_hours=0.25, scenario="stay", concurrency=0)
    assert result["copies_per_primary"] == {1: 40}
    assert result["queue_delay_max_s"] == 0  # nothing waits for another run to end
    assert result["failures"] == 0 and result["refused_21st_slot"] == 0


def test_a_horizon_that_comes_first_ends_the_runs_still_going():
    # primaries from 02:00 to 02:30, the horizon at 02:24, during the 02:15 sweep's stay
    result = copysim.simulate(**SMALL, scenario="stay", horizon_days=0.1)
    assert 0 < result["copies_started"] < SMALL["primaries"]
    assert result["all_copied_at"] is None and result["failures"] == 0


def test_the_simulation_starts_from_empty_regions_and_leaves_the_tests_data_alone():
    theirs = make_snapshot({"Type": "Automated", "DeleteOn": "2099-01-01", "Copy_Dest": DEST})
    result = copysim.simulate(primaries=5, window_hours=0.1, scenario="today")
    assert result["copies_per_primary"] == {1: 5} and result["copies_started"] == 5
    assert list(snapshots()) == [theirs] and snapshots(DEST) == {}


def test_the_measures_on_a_day_worked_by_hand():
    # two primaries at 0; one slot; copies 0-20 and 10-30: the second waits 10 s, in which
    # the slot is busy; with two slots, half of them
    assert copysim.utilisation([0, 0], [0, 10], [20, 30], slots=1)[:2] == (1.0, 10 / 3600)
    assert copysim.utilisation([0, 0], [0, 10], [20, 30], slots=2)[0] == 0.5
    # primary 1 (older) waits while 2 starts: one start out of order
    assert copysim.out_of_order([0, 5, 6], [1, 9, 7]) == {2}
    starts, ends = copysim.ideal([0, 0, 0], [10, 20, 5], slots=2)
    assert (starts, ends) == ([0, 0, 10], [10, 20, 15])


def test_the_command_line_prints_the_table_and_saves_json(tmp_path, capsys):
    out = tmp_path / "copysim.json"
    argv = ["--primaries", "10", "--window-hours", "0.2", "--json", str(out)]
    assert copysim.main(argv) == 0
    saved = json.loads(out.read_text())
    assert set(saved) == {"today", "stay"}
    assert "slot utilisation while copies wait" in capsys.readouterr().out
