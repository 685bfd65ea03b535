"""Retention: the tiers (daily, weekly, monthly, yearly) and each snapshot's DeleteOn."""

import calendar
import re
from datetime import date, timedelta

from ebs_snapshots.common.tags import (
    DEFAULT_RETENTION_DAYS,
    FALSE_WORDS,
    MAX_RETENTION_DAYS,
    TAG_ARCHIVE,
    TAG_RETENTION,
    count_or,
    parse_count,
)

TAG_WEEKLY_DAY = "Weekly_Day"
# Longer-lived tiers: (tier, instance tag, cap: about a hundred years, in its own unit).
TIERS = (
    ("weekly", "Retention_Weekly", 5200),
    ("monthly", "Retention_Monthly", 1200),
    ("yearly", "Retention_Yearly", 100),
)
ARCHIVE_TIERS = ("monthly", "yearly")  # the tiers an instance's Archive tag may name
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_WEEKLY_DAY = 6  # Sunday


def parse_retention(value):
    """(days, warning or None) for a Retention tag value; None means the tag is absent."""
    return count_or(value, TAG_RETENTION, MAX_RETENTION_DAYS, DEFAULT_RETENTION_DAYS)


def parse_weekday(value):
    """(weekday, Monday being 0; warning or None) for Weekly_Day: Sun or Sunday, any case."""
    if value is None:
        return DEFAULT_WEEKLY_DAY, None
    word = value.strip().lower()
    for number, name in enumerate(WEEKDAYS):
        if word in (name, name[:3]):
            return number, None
    return (
        DEFAULT_WEEKLY_DAY,
        f"{TAG_WEEKLY_DAY} {value!r} is not a weekday (Mon ... Sun); using Sun",
    )


def add_months(day, months):
    """Calendar months: 31 January + 1 month is the last day of February."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def tier_expiry(tier, count, today):
    if tier == "weekly":
        return today + timedelta(weeks=count)
    return add_months(today, count * (12 if tier == "yearly" else 1))


def retention_plan(tags, today):
    """(DeleteOn, tier, tag errors as (tag, why)): the latest date among the tiers that apply
    to today (the weekly day, the 1st of the month, 1 January); on a tie, the longer tier
    names it."""
    days, problem = parse_retention(tags.get(TAG_RETENTION))
    warnings = [(TAG_RETENTION, problem)] if problem else []
    weekday, problem = parse_weekday(tags.get(TAG_WEEKLY_DAY))
    warnings += [(TAG_WEEKLY_DAY, problem)] if problem else []
    applies = {
        "weekly": today.weekday() == weekday,
        "monthly": today.day == 1,
        "yearly": (today.month, today.day) == (1, 1),
    }
    candidates = [(today + timedelta(days=days), 0, "daily")]
    for rank, (tier, tag, cap) in enumerate(TIERS, 1):
        if tag not in tags:
            continue
        count, problem = parse_count(tags[tag], tag, cap)
        if problem:
            warnings.append((tag, problem if count else f"{problem}; no {tier} tier"))
        if count and applies[tier]:
            candidates.append((tier_expiry(tier, count, today), rank, tier))
    delete_on, _, tier = max(candidates)
    return delete_on, tier, warnings


def archive_tiers(tags):
    """(the tiers whose snapshots are tagged Archive=Yes, tag errors) from an instance's
    Archive tag: monthly, yearly or both (commas or spaces, any case). Absent, empty or a
    no-word: none; anything else warns and means none. A tier the instance does not keep
    (no Retention_Monthly, say) is named in a warning: nothing of it gets archived."""
    value = tags.get(TAG_ARCHIVE, "").strip().lower()
    if not value or value in FALSE_WORDS:
        return frozenset(), []
    words = {word for word in re.split(r"[\s,]+", value) if word}
    if not words <= set(ARCHIVE_TIERS):
        raw = tags[TAG_ARCHIVE]
        why = f"{TAG_ARCHIVE} {raw!r} is not monthly, yearly or both; not archived"
        return frozenset(), [(TAG_ARCHIVE, why)]
    kept = {tier: tag for tier, tag, _ in TIERS}
    warnings = [
        (
            TAG_ARCHIVE,
            f"{TAG_ARCHIVE} names {tier}, but there is no {kept[tier]} tag: nothing to archive",
        )
        for tier in sorted(words)
        if kept[tier] not in tags
    ]
    return frozenset(words), warnings
