"""The schedule's pure rules: intervals, slots, catch-up, hourly retention, the fleet's asks."""

from datetime import UTC, date, datetime, timedelta

import pytest

from ebs_snapshots.creator.limits import CALLS_PER_HOUR, instance_asks, kept_per_volume
from ebs_snapshots.creator.schedule import (
    Schedule,
    ceil_date,
    copies_every_snapshot,
    hourly_delete_on,
    parse_every,
    slot_of,
)

DAY = datetime(2026, 11, 26, tzinfo=UTC)


def at(hour, minute=0, day=0):
    return DAY + timedelta(days=day, hours=hour, minutes=minute)


@pytest.mark.parametrize(
    ("value", "hours"),
    [(None, 24), ("4", 4), ("4h", 4), (" 12 hours ", 12), ("1 hour", 1), ("24", 24)],
)
def test_intervals_dlm_offers_are_read(value, hours):
    assert parse_every(value) == (hours, None)


@pytest.mark.parametrize("value", ["5", "0", "48", "four", "", "-1", "4m", "1.5"])
def test_other_intervals_warn_and_mean_daily(value):
    hours, problem = parse_every(value)
    assert hours == 24
    assert "Backup_Every" in problem and repr(value) in problem


def test_slots_align_to_the_daily_hour_so_the_daily_is_one_of_them():
    starts = [slot_of(at(h), 4, 2).start for h in range(24)]
    assert sorted({s.hour for s in starts}) == [2, 6, 10, 14, 18, 22]
    assert slot_of(at(2), 4, 2).daily and not slot_of(at(6), 4, 2).daily
    assert slot_of(at(1, 59), 4, 2).start == at(22, day=-1)  # before 02:00: yesterday's last
    assert slot_of(at(1, 59), 24, 2).start == at(2, day=-1)


@pytest.mark.parametrize("every", [1, 2, 3, 4, 6, 8, 12, 24])
def test_every_hour_of_a_day_is_in_exactly_one_slot_and_each_slot_starts_on_the_grid(every):
    starts = {slot_of(at(h, 30), every, 5).start for h in range(5, 53)}  # two days
    assert len(starts) == 48 // every
    assert all((s.hour - 5) % every == 0 and s.minute == 0 for s in starts)


def test_a_scheduled_run_takes_a_slot_at_its_start_and_two_hours_after_not_later():
    def due(hour):
        return Schedule(at(hour), 2).due(6)

    assert due(2).start == at(2)
    assert due(3).start == at(2) and due(4).start == at(2)  # catch-up
    assert due(5) is None and due(7) is None
    assert due(8).start == at(8)


def test_a_run_on_demand_takes_the_slot_it_falls_in_whatever_the_hour():
    assert Schedule(at(5), 2, scheduled=False).due(24).start == at(2)


@pytest.mark.parametrize(("every", "last_hour"), [(1, 2), (2, 3), (3, 4), (4, 4), (24, 4)])
def test_the_last_run_to_try_a_slot(every, last_hour):
    slot = slot_of(at(2), every, 2)
    assert next(h for h in range(2, 7) if Schedule(at(h), 2).last_chance(slot)) == last_hour


def test_hourly_retention_is_hours_rounded_up_to_a_whole_day_never_less():
    assert hourly_delete_on({"Retention_Hourly": "48"}, at(6), 7) == (date(2026, 11, 29), None)
    assert hourly_delete_on({"Retention_Hourly": "48"}, at(0), 7) == (date(2026, 11, 28), None)
    assert hourly_delete_on({}, at(6), 3)[0] == date(2026, 11, 30)  # the daily's 3 days
    kept, problem = hourly_delete_on({"Retention_Hourly": "two days"}, at(6), 3)
    assert kept == date(2026, 11, 30) and "Retention_Hourly" in problem
    for hour in range(24):
        when = at(hour, 17)
        day = ceil_date(when)
        assert datetime.combine(day, datetime.min.time(), UTC) >= when
        assert datetime.combine(day, datetime.min.time(), UTC) - when < timedelta(days=1)


def test_copy_hourly_is_yes_or_no():
    assert copies_every_snapshot({}) == (False, None)
    assert copies_every_snapshot({"Copy_Hourly": "Yes"}) == (True, None)
    flag, problem = copies_every_snapshot({"Copy_Hourly": "sometimes"})
    assert flag is False and "Copy_Hourly" in problem


def instance(tags, volumes=2):
    return {
        "InstanceId": "i-0123456789abcdef0",
        "State": {"Name": "running"},
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        "BlockDeviceMappings": [
            {"DeviceName": f"/dev/sd{chr(97 + n)}", "Ebs": {"VolumeId": f"vol-{n:08x}"}}
            for n in range(volumes)
        ],
    }


def test_the_calls_an_instance_asks_for_each_hour():
    by_hour, _ = instance_asks(instance({"Backup": "Yes", "Backup_Every": "6"}), 2)
    assert [h for h in range(24) if by_hour[h]] == [2, 8, 14, 20]
    assert by_hour[2] == 2  # one CreateSnapshot a volume
    by_hour, _ = instance_asks(
        instance({"Backup": "Yes", "Backup_Every": "6", "Consistency": "instance"}), 2
    )
    assert by_hour[2] == 1  # one CreateSnapshots for the set
    assert instance_asks(instance({"Backup": "No"}), 2) is None


def test_snapshots_kept_count_every_tier_and_the_hourly_ones():
    assert kept_per_volume({}, 24) == 7
    tags = {"Retention": "14", "Retention_Weekly": "8", "Retention_Hourly": "48"}
    assert kept_per_volume(tags, 4) == 14 + 8 + 10  # 5 between dailies a day, for 2 days
    assert kept_per_volume({"Retention_Hourly": "24"}, 1) == 7 + 23


def test_the_hourly_call_budget_is_ninety_percent_of_five_a_second():
    assert CALLS_PER_HOUR == 16200
