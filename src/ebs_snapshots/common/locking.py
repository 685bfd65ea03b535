"""Locking snapshots: LockSnapshot for a snapshot tagged Lock, and finding locks that failed."""

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ebs_snapshots.common.aws import describe_error
from ebs_snapshots.common.budget import Client
from ebs_snapshots.common.locks import TAG_LOCK, TAG_LOCK_COOL_OFF, cool_off_hours, lock_mode
from ebs_snapshots.common.reporting import Summary
from ebs_snapshots.common.tags import MAX_RETENTION_DAYS, TAG_DELETE_ON, parse_date, tag_map

RELOCK = "tagged Lock but not locked (an earlier lock failed, or was removed)"


def lock_snapshot(
    ec2: Client,
    snapshot_id: str | None,
    request: Mapping[str, Any],
    summary: Summary,
    **item: Any,
) -> None:
    """Lock one snapshot. A lock that fails (throttled, refused, a state AWS cannot lock,
    the network) never costs the snapshot: a warning, and a later run's sweep locks it."""
    until = request["ExpirationDate"].date().isoformat()
    record = {"snapshot_id": snapshot_id} if snapshot_id else {}
    record |= {"lock": request["LockMode"], "until": until, **item}
    if summary.dry_run:
        summary.did("lock", **record)
        return
    try:
        ec2.lock_snapshot(SnapshotId=snapshot_id, **request)
    except Exception as exc:  # out of time too: a sweep (this run's, or the next) locks it
        where = {k: v for k, v in item.items() if k != "reason"}
        said = [w for w in summary.data["warnings"] if w["id"] == snapshot_id]
        if not any(w["reason"].startswith("not locked (") for w in said):  # once a run
            why = f"not locked ({describe_error(exc)}); a later sweep locks it"
            summary.warn(snapshot_id or "?", why, **where)
        return
    summary.did("lock", **record)


def unlocked(
    snapshots: Iterable[Mapping[str, Any]], locked: Mapping[str, Mapping[str, Any]], today: date
) -> list[tuple[str, dict[str, Any]]]:
    """[(snapshot id, LockSnapshot's parameters)] for the snapshots tagged for a lock, their
    DeleteOn ahead, whose lock is not in force (it failed, or was removed while the Lock tag
    stayed) or ends before DeleteOn (shortened): locking again extends it, in any state."""
    todo = []
    for snapshot in snapshots:
        tags, sid = tag_map(snapshot), snapshot["SnapshotId"]
        request = lock_request(tags, parse_date(tags.get(TAG_DELETE_ON)), today)
        if not request or snapshot.get("State") not in ("pending", "completed"):
            continue
        ends = (locked.get(sid) or {}).get("LockExpiresOn")
        if sid not in locked or (ends is not None and ends < request["ExpirationDate"]):
            todo.append((sid, request))
    return todo


def probe_lock(
    ec2: Client, todo: Sequence[tuple[str, Mapping[str, Any]]], summary: Summary
) -> None:
    """Dry run: ask AWS whether LockSnapshot would be allowed here, with the lock a snapshot
    of ours needs (IAM allows it only on Type=Automated ones, so a made-up id cannot tell,
    and a snapshot already locked in compliance mode refuses any other lock); with none
    that needs a lock, say it could not be asked."""
    region = ec2.meta.region_name
    if not todo:
        summary.skip(region, "ec2:LockSnapshot not probed: no snapshot here needs a lock now")
        return
    sid, request = todo[0]
    summary.probe("ec2:LockSnapshot", region, ec2.lock_snapshot, SnapshotId=sid, **request)


def lock_request(
    tags: Mapping[str, str], delete_on: date | None, today: date
) -> dict[str, Any] | None:
    """LockSnapshot's parameters for a snapshot with these tags and this DeleteOn (a date),
    or None when it is not to be locked (no Lock tag, or its DeleteOn has come). The lock
    expires at DeleteOn 00:00 UTC, within LockSnapshot's 36500 days."""
    mode = lock_mode(tags.get(TAG_LOCK))[0]
    if mode is None or delete_on is None or delete_on <= today:
        return None
    until = min(delete_on, today + timedelta(days=MAX_RETENTION_DAYS))
    request: dict[str, Any] = {
        "LockMode": mode,
        "ExpirationDate": datetime(until.year, until.month, until.day, tzinfo=UTC),
    }
    if mode == "compliance":
        request["CoolOffPeriod"] = cool_off_hours(tags.get(TAG_LOCK_COOL_OFF))[0]
    return request
