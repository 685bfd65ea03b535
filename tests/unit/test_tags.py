"""Pure functions of the shared modules, tested where they are written (src/ebs_snapshots)."""

from datetime import date

import pytest

from ebs_snapshots.common.tags import clean_regions, count_or, parse_bool, parse_date
from ebs_snapshots.creator.retention import add_months, parse_weekday


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Yes", True),
        ("TRUE", True),
        ("1", True),
        ("on", True),
        (True, True),
        (" yes ", True),
        ("No", False),
        ("false", False),
        ("0", False),
        ("OFF", False),
        (False, False),
        ("Yse", None),
        ("", None),
        ("y", None),
        ("2", None),
        (None, None),
    ],
)
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2026-11-26", True),
        ("2024-02-29", True),
        ("2026-02-29", False),
        ("2026-11-26 ", False),
        ("20261126", False),
        ("2026-W48-4", False),
        ("2026-11-26T00:00", False),
        (None, False),
        ("２０２６-11-26", False),
    ],
)
def test_parse_date_is_strict(value, ok):
    assert (parse_date(value) is not None) is ok


def test_count_or_reads_a_whole_number_else_the_default_with_a_warning():
    assert count_or(None, "Copy_Retention", 100, 7) == (7, None)
    assert count_or("30", "Copy_Retention", 100, 7) == (30, None)
    number, problem = count_or("seven", "Copy_Retention", 100, 7)
    assert number == 7 and problem.endswith("; using 7")
    number, problem = count_or("500", "Copy_Retention", 100, 7)
    assert number == 100 and problem


def test_add_months_keeps_the_day_or_takes_the_months_last():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 26), 2) == date(2027, 1, 26)


def test_clean_regions_keeps_enabled_regions_once_and_says_why_it_drops_the_rest():
    keep, dropped = clean_regions(
        "us-west-2, us-west-2 eu-west-l us-east-1", {"us-west-2", "us-east-1"}, "us-east-1"
    )
    assert keep == ["us-west-2"]
    assert dropped == [
        ("eu-west-l", "is not an enabled region of this account"),
        ("us-east-1", "is this region"),
    ]


def test_parse_weekday_reads_a_day_name_in_any_case_else_sunday():
    assert parse_weekday("wed") == (2, None)
    assert parse_weekday("Friday") == (4, None)
    day, problem = parse_weekday("Caturday")
    assert day == 6 and "not a weekday" in problem
