"""The schedule: an instance's interval (Backup_Every), the slot a run is in, and what the
snapshots between two dailies get (Retention_Hourly, Copy_Hourly).

The rule is stateless. A day is cut into slots of the instance's interval, aligned to the
daily hour (BACKUP_DAILY_HOUR), so the daily snapshot is the slot that starts then. The
creator runs every hour. A scheduled run takes the instances whose slot started at its
hour, or up to CATCH_UP_HOURS before it (a missed run is caught up by the next ones), and
skips each volume that already has a snapshot tagged with that slot (Backup_Slot): a
retried event, an overlapping run and a hand-off find it there. A run creates only in its
own hour (RUN_WINDOW): what it leaves, the next run catches up, so two runs never take
the same slot at once.
"""

import os
import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from ebs_snapshots.common.tags import MAX_RETENTION_DAYS, count_or, parse_bool, tag_map

TAG_BACKUP_EVERY = "Backup_Every"  # hours between snapshots: one of INTERVALS
TAG_RETENTION_HOURLY = "Retention_Hourly"  # hours to keep the snapshots between dailies
TAG_COPY_HOURLY = "Copy_Hourly"  # Yes: copy them too (else only the daily is copied)
TAG_BACKUP_SLOT = "Backup_Slot"  # on a snapshot: the start of the slot it was taken for
INTERVALS = (1, 2, 3, 4, 6, 8, 12, 24)  # DLM's: each divides a day, so slots align daily
DAILY = 24
HOURLY_TIER = "hourly"  # Retention_Tier of a snapshot between two dailies
DAILY_HOUR_ENV = "BACKUP_DAILY_HOUR"  # the hour (UTC) of the daily snapshot; unset: no slots
CATCH_UP_HOURS = 2  # a slot is tried by the run at its start and by the next two
# A run creates only until this long after its scheduled hour: the next run's listing,
# five minutes later, sees all it made (Describe calls are eventually consistent).
RUN_WINDOW = timedelta(minutes=55)
SLOT_FORMAT = "%Y-%m-%dT%H:%MZ"


def parse_every(value):
    """(hours, warning or None) for a Backup_Every value: 4, 4h or 4 hours; absent: daily."""
    if value is None:
        return DAILY, None
    match = re.fullmatch(r"\s*([0-9]+)\s*(h|hours?)?\s*", value.lower())
    if match and int(match.group(1)) in INTERVALS:
        return int(match.group(1)), None
    allowed = ", ".join(map(str, INTERVALS))
    return DAILY, f"{TAG_BACKUP_EVERY} {value!r} is not one of {allowed} (hours); daily"


def daily_hour():
    """(the daily hour from BACKUP_DAILY_HOUR, or None; warning or None). Unset, a run
    takes every instance, as before slots (a job file deployed by hand, the tests)."""
    value = os.environ.get(DAILY_HOUR_ENV, "").strip()
    if not value:
        return None, None
    if re.fullmatch(r"[0-9]{1,2}", value) and int(value) < 24:
        return int(value), None
    return None, f"{DAILY_HOUR_ENV} {value!r} is not an hour, 0 to 23; no slots: every instance"


class Slot(NamedTuple):
    """The slot a snapshot is taken for: its start (UTC), the interval, and whether it is
    the day's daily (the slot that starts at the daily hour)."""

    start: datetime
    every: int
    daily: bool

    @property
    def tag(self):
        return f"{self.start:{SLOT_FORMAT}}"


def slot_of(when, every, hour):
    """The slot of an ``every``-hour schedule aligned to ``hour`` that holds ``when``."""
    base = when.astimezone(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    if base > when:
        base -= timedelta(days=1)
    steps = (when - base) // timedelta(hours=every)
    start = base + steps * timedelta(hours=every)
    return Slot(start, every, start == base)


class Schedule(NamedTuple):
    """A run's place in the schedule: its hour (the scheduled time, or the hour now for a
    run that is not scheduled), the daily hour, and whether it was scheduled (a run on
    demand takes every instance it is asked for, in the slot it falls in)."""

    hour: datetime
    daily_hour: int
    scheduled: bool = True

    def slot(self, every):
        return slot_of(self.hour, every, self.daily_hour)

    def due(self, every):
        """The slot this run takes for an ``every``-hour instance, or None: a scheduled run
        takes a slot that started at its hour or up to CATCH_UP_HOURS before."""
        slot = self.slot(every)
        if not self.scheduled:
            return slot
        return slot if self.hour - slot.start <= timedelta(hours=CATCH_UP_HOURS) else None

    def last_chance(self, slot):
        """Whether no later run will try ``slot``: its catch-up ends, or the slot does."""
        next_slot = slot.start + timedelta(hours=slot.every)
        last = min(slot.start + timedelta(hours=CATCH_UP_HOURS), next_slot - timedelta(hours=1))
        return self.scheduled and self.hour >= last

    @property
    def until(self):
        return self.hour + RUN_WINDOW


def run_schedule(when, scheduled, hour):
    """The run's Schedule (None without a daily hour): ``when``, its scheduled time (a
    scheduled event's) or now, cut to the hour."""
    if hour is None:
        return None
    start = when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return Schedule(start, hour, scheduled)


def hourly_delete_on(tags, start, days):
    """(DeleteOn, warning or None) of a snapshot between dailies taken for the slot that
    starts at ``start``: Retention_Hourly hours on (default: ``days``, the daily retention),
    rounded up to a whole day. DeleteOn is a date and the manager runs daily: a snapshot is
    kept at least its hours, and up to a day more, never less."""
    hours, problem = count_or(
        tags.get(TAG_RETENTION_HOURLY), TAG_RETENTION_HOURLY, MAX_RETENTION_DAYS * 24, days * 24
    )
    expiry = start + timedelta(hours=hours)
    return ceil_date(expiry), problem


def ceil_date(when):
    """The first date whose midnight (UTC) is not before ``when``."""
    day = when.date()
    return day if when == datetime.combine(day, datetime.min.time(), UTC) else day + timedelta(1)


def copies_every_snapshot(tags):
    """(Copy_Hourly: copy the snapshots between dailies too?, warning or None)."""
    value = tags.get(TAG_COPY_HOURLY)
    if value is None:
        return False, None
    flag = parse_bool(value)
    if flag is None:
        return False, f"{TAG_COPY_HOURLY} {value!r} is not yes/no; only the daily is copied"
    return flag, None


def every_of(instance):
    """An instance's interval in hours (a bad Backup_Every is daily; its plan says so)."""
    return parse_every(tag_map(instance).get(TAG_BACKUP_EVERY))[0]


def due_slot(instance, schedule):
    """The slot ``schedule``'s run takes for ``instance``, or None: not due."""
    return schedule.due(every_of(instance))
