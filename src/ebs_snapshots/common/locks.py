"""Snapshot Lock, read: the Lock tags' words and the locks in force on snapshots."""

from typing import Any

from ebs_snapshots.common.aws import PAGE_SIZE
from ebs_snapshots.common.budget import Client
from ebs_snapshots.common.tags import FALSE_WORDS, count_or

# Snapshot Lock (EBS user guide, "Snapshot lock"): a snapshot tagged Lock=governance or
# compliance is locked until its DeleteOn, 00:00 UTC; compliance with a cooling-off period
# (Lock_CoolOffHours, 1-72) in which a person may still undo a wrong tag.
TAG_LOCK, TAG_LOCK_COOL_OFF = "Lock", "Lock_CoolOffHours"
LOCK_MODES = ("governance", "compliance")
COOL_OFF_HOURS, MAX_COOL_OFF_HOURS = 24, 72
LOCKS_IN_FORCE = ("governance", "compliance-cooloff", "compliance")  # not "expired"


def lock_mode(value: object) -> tuple[str | None, str | None]:
    """(governance, compliance or None; warning or None) for a Lock tag, any case: absent,
    empty or a no-word means no lock; anything else warns and means no lock."""
    word = str(value or "").strip().lower()
    if word in LOCK_MODES:
        return word, None
    if not word or word in FALSE_WORDS:
        return None, None
    return None, f"{TAG_LOCK} {value!r} is not governance or compliance; not locked"


def cool_off_hours(value: str | None) -> tuple[int, str | None]:
    """(hours, warning or None) for Lock_CoolOffHours: 1 to 72, default 24."""
    return count_or(value, TAG_LOCK_COOL_OFF, MAX_COOL_OFF_HOURS, COOL_OFF_HOURS)


def locks_in_force(ec2: Client, ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """{snapshot id: its lock} for this region's snapshots locked now (DescribeLockedSnapshots,
    filtered on the lock state; botocore has no paginator for it, so NextToken by hand)."""
    params: dict[str, Any] = {"Filters": [{"Name": "lock-state", "Values": list(LOCKS_IN_FORCE)}]}
    params |= {"SnapshotIds": ids} if ids else {"MaxResults": PAGE_SIZE}
    found: dict[str, dict[str, Any]] = {}
    while True:
        page = ec2.describe_locked_snapshots(**params)
        found |= {lock["SnapshotId"]: lock for lock in page.get("Snapshots", [])}
        if not page.get("NextToken"):
            return found
        params["NextToken"] = page["NextToken"]
