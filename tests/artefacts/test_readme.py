"""The README's numbers that come from the code: a changed constant fails here until the
README says the same."""

import re
from pathlib import Path

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

README = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())


def test_the_readme_quotes_the_constants_the_jobs_use():
    window = manager.COVERAGE_MAX_AGE_HOURS + creator.COPY_LAG_HOURS
    quoted = [
        f"less than {creator.MIN_START_S} s of Lambda time",
        f"the last {window} h",
        f"`LAST_COPY_GRACE_DAYS` ({manager.LAST_COPY_GRACE_DAYS})",
        f"one filtered `DescribeSnapshots` per {manager.LOOKUP_BATCH} copies",
        f"`COPY_MAX_LAG_HOURS` (default {creator.COPY_LAG_HOURS}",
        f"`COVERAGE_MAX_AGE_HOURS` (default {manager.COVERAGE_MAX_AGE_HOURS}",
        f"only {copier.COPIES_IN_FLIGHT} copies into a region",
    ]
    assert [q for q in quoted if q not in README] == []
    assert manager.EXPIRED_COPY_DAYS == 2 and "more than two days past" in README


def test_the_cost_table_is_what_make_cost_prints_now():
    from scripts import cost

    assert " ".join(cost.table().split()) in README
    once = cost.EXAMPLE["volumes"] * cost.EXAMPLE["written_gb"]
    assert f"({once:,} GB, ${once * cost.PRICES['transfer'][0]:,.2f} here)" in README


def test_the_archive_example_is_what_make_cost_prints_now():
    from scripts import cost

    assert " ".join(cost.archive_table().split()) in README
    assert (
        manager.ARCHIVE_MIN_DAYS == 90 and "at least 90 days remain until its `DeleteOn`" in README
    )
    assert manager.ARCHIVE_AFTER.days == 1 and "once it is a day old" in README
    assert cost.PRICES["archive"][0] * 4 == cost.PRICES["snapshot"][0]  # "a quarter"


def test_the_layout_map_names_every_module_and_folder():
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text()
    tree = text[text.index("src/ebs_snapshots/          the source") :]
    tree = tree[: tree.index("```")]
    named = set(re.findall(r"[\w.]+\.py|[\w]+/", tree))
    package = root / "src" / "ebs_snapshots"
    for path in package.rglob("*.py"):
        assert path.name == "__init__.py" or path.name in named, path
    for folder in ("common/", "creator/", "copier/", "manager/", "unit/", "jobs/"):
        assert folder in named
    for folder in (root / "tests").iterdir():
        assert not folder.is_dir() or folder.name == "__pycache__" or f"{folder.name}/" in named
    for tool in [*(root / "testkit").glob("*.py"), *(root / "scripts").glob("*.py")]:
        assert tool.name == "__init__.py" or tool.name in named, tool
