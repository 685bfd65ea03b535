"""Expiry: which snapshots are due, KeepForever, locks, deleting."""

from datetime import timedelta

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import (
    LOOKUP_BATCH,
    automated_snapshots,
    describe_error,
    error_code,
    make_client,
    paginate,
)
from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.events import utc_today
from ebs_snapshots.common.locks import TAG_LOCK, lock_mode, locks_in_force
from ebs_snapshots.common.runtime import in_parallel
from ebs_snapshots.common.tags import (
    AUTOMATED,
    FALSE_WORDS,
    TAG_DELETE_ON,
    TAG_KEEP_FOREVER,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_TYPE,
    is_kept_forever,
    keep_forever_key,
    parse_date,
    tag_map,
)
from ebs_snapshots.manager.archive import (
    archive_snapshot,
    note_standard,
    restore_finished,
    restore_snapshot,
    write_tag,
)
from ebs_snapshots.manager.coverage import backed_up
from ebs_snapshots.manager.last_backups import past_grace, report_held

# The creator and the copier lock a Lock snapshot as they make it, and retry a failed lock
# on their next run: one still unlocked this long after it was taken is reported.
LOCK_WITHIN = timedelta(hours=24)


def verdict(snapshot, today):
    """(action, reason) for one snapshot. Actions: "delete"; "keep" (not due yet, or not
    ours); "forever" (KeepForever, not due); "hold" (due, but KeepForever); "warn" (kept:
    its DeleteOn cannot be read)."""
    tags = tag_map(snapshot)
    if tags.get(TAG_TYPE) != AUTOMATED:  # the listing filters on it; never trust one filter
        return "keep", "not Type=Automated"
    raw = tags.get(TAG_DELETE_ON)
    delete_on = parse_date(raw)
    due = delete_on is not None and delete_on <= today
    key = keep_forever_key(tags)
    if key:
        return ("hold" if due else "forever"), f"{key}={tags[key]}"
    if delete_on is None:
        return "warn", f"DeleteOn {raw!r} is not a YYYY-MM-DD date; kept"
    return ("delete" if due else "keep"), f"DeleteOn {raw}"


def missing_lock(snapshot, locks, now):
    """Why a snapshot tagged Lock should be locked and is not, a day after it was taken;
    None when it is locked, not tagged, too young, or its DeleteOn has come."""
    tags = tag_map(snapshot)
    mode = lock_mode(tags.get(TAG_LOCK))[0]
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if mode is None or snapshot["SnapshotId"] in locks or snapshot.get("State") == "error":
        return None
    if (
        delete_on is None
        or delete_on <= utc_today(now)
        or snapshot["StartTime"] > now - LOCK_WITHIN
    ):
        return None
    hours = f"{LOCK_WITHIN.total_seconds() / 3600:g}"
    maker = "copier of " + tags[TAG_SOURCE_REGION] if TAG_SOURCE_REGION in tags else "creator"
    return (
        f"{TAG_LOCK}={tags[TAG_LOCK]} but not locked {hours} h after it was taken: anyone "
        f"with DeleteSnapshot can delete it; see the {maker}'s warnings"
    )


def lock_note(lock):
    """What a lock in force says of a due snapshot that the manager therefore leaves."""
    until = lock.get("LockExpiresOn")
    until = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "until its lock expires"
    return (
        f"due, but locked ({lock.get('LockState', 'locked')}) {until}: not deleted; the "
        "manager never unlocks, it deletes it once the lock has expired"
    )


def near_miss(tags):
    """A warning when a snapshot is kept by a key that is not exactly KeepForever, or by a
    value that is a no-word but for spaces (it keeps: only exactly a no-word releases)."""
    key = keep_forever_key(tags)
    if key is None:
        return None
    if key != TAG_KEEP_FOREVER:
        return f"tag key {key!r} is not {TAG_KEEP_FOREVER}; kept as if it were: rename the key"
    value = tags[key]
    if value.strip().lower() in FALSE_WORDS:
        return (
            f"{key}={value!r} is not exactly a no-word; kept: write {value.strip()!r} to release it"
        )
    return None


def delete_snapshot(ec2, snapshot, reason, summary):
    sid = snapshot["SnapshotId"]
    if summary.dry_run:
        summary.probe("ec2:DeleteSnapshot", summary.region, ec2.delete_snapshot, SnapshotId=sid)
    else:
        try:
            ec2.delete_snapshot(SnapshotId=sid)
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvalidSnapshot.NotFound":  # someone deleted it first: done
                summary.skip(sid, "already deleted")
            elif code == "InvalidSnapshot.InUse":  # an AMI is registered from it
                summary.warn(sid, f"not deleted: {exc.response['Error'].get('Message', code)}")
                summary.skip(sid, "in use by an AMI")
            elif code == "UnauthorizedOperation" and kept_since(ec2, sid):
                # The policy refuses to delete a KeepForever snapshot: someone tagged it
                # after the listing. Kept, as it should be; not a failure.
                summary.skip(sid, f"{TAG_KEEP_FOREVER} added since it was listed: kept")
                summary.count("kept_forever")
            else:
                refused_unless_locked(ec2, sid, exc, summary)
            return
    summary.did("delete", snapshot_id=sid, reason=reason, volume_id=snapshot.get("VolumeId"))


def refused_unless_locked(ec2, sid, exc, summary):
    """A refused delete is a failure, unless the snapshot is locked (since the listing, or
    its locks could not be read): AWS documents no error code of its own for that, so ask
    DescribeLockedSnapshots. Locked: a warning naming its expiry, and it is left."""
    try:
        lock = locks_in_force(ec2, [sid]).get(sid)
    except OutOfTime:
        raise
    except Exception as unread:  # its lock cannot be read either: the refusal stands
        summary.error(sid, exc, f"refused; its lock could not be read ({describe_error(unread)})")
        return
    if lock is None:
        summary.error(sid, exc)
        return
    summary.warn(sid, lock_note(lock))
    summary.skip(sid, "locked")


def read_locks(ec2, summary):
    """{snapshot id: lock} of the region's snapshots locked now, or None (a warning) when
    they cannot be read: then a locked due snapshot is found by DeleteSnapshot's refusal,
    and missing locks are not checked this run."""
    try:
        return locks_in_force(ec2)
    except OutOfTime:
        raise
    except Exception as exc:
        summary.warn(summary.region, f"snapshot locks not read: {describe_error(exc)}")
        return None


def kept_since(ec2, sid):
    """Whether the snapshot is KeepForever now (one DescribeSnapshots by id)."""
    try:
        (snap,) = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]
    except (ClientError, ValueError):
        return False
    return is_kept_forever(tag_map(snap))


def keep_copy(ec2, snapshot, why, summary):
    """A due copy whose primary someone kept: tag it KeepForever too, and keep it."""
    sid, value = snapshot["SnapshotId"], why[0]
    refused = write_tag(ec2, sid, TAG_KEEP_FOREVER, value, summary)
    if refused:  # not deleted either way: it is kept this run
        summary.error(sid, refused, "kept, but not tagged KeepForever")
        return
    summary.did("tag", snapshot_id=sid, tag=f"{TAG_KEEP_FOREVER}={value}", reason=why[1])
    summary.count("kept_forever")


def act(ec2, item, summary):
    kind, snapshot, detail = item
    ACTIONS[kind](ec2, snapshot, detail, summary)


class SourceLookup:
    """Due copies wait here until their primaries are looked up in the source region, one
    call per LOOKUP_BATCH copies and source region: a copy whose primary someone has just
    kept (KeepForever) is kept and tagged, not deleted. A source region that cannot be read
    (down, or a Source_Region that is no region) keeps its copies, with a warning, until
    LAST_COPY_GRACE_DAYS past their DeleteOn: nothing is kept forever for want of a look."""

    def __init__(self, summary, budget, pacer, today, grace):
        self.summary, self.budget, self.pacer = summary, budget, pacer
        self.today, self.grace = today, grace
        self.waiting, self.clients = {}, {}

    def add(self, snapshot, reason):
        tags = tag_map(snapshot)
        source, region = tags.get(TAG_SOURCE_SNAPSHOT), tags.get(TAG_SOURCE_REGION)
        if not source or not region:
            return [("delete", snapshot, reason)]
        batch = self.waiting.setdefault(region, [])
        batch.append((snapshot, reason))
        return self.resolve(region) if len(batch) >= LOOKUP_BATCH else []

    def flush(self):
        return [item for region in list(self.waiting) for item in self.resolve(region)]

    def client(self, region):
        """The run's EC2 client for a region, made once (it may raise, as for an unknown
        region: the caller's failure)."""
        if region not in self.clients:
            self.clients[region] = make_client("ec2", region, self.budget, self.pacer)
        return self.clients[region]

    def resolve(self, region):
        batch = self.waiting.pop(region)
        ids = sorted({tag_map(s)[TAG_SOURCE_SNAPSHOT] for s, _ in batch})
        try:
            kept = kept_primaries(self.client(region), ids)
        except OutOfTime:
            raise
        except Exception as exc:
            return self.unchecked(region, batch, exc)
        items = []
        for snapshot, reason in batch:
            source = tag_map(snapshot)[TAG_SOURCE_SNAPSHOT]
            if source in kept:
                why = f"its primary {source} in {region} is {kept[source]}"
                items.append(("keep", snapshot, (kept[source].split("=", 1)[1], why)))
            else:
                items.append(("delete", snapshot, reason))
        return items

    def unchecked(self, region, batch, exc):
        """Copies whose primaries could not be looked up: kept within their grace period,
        deleted after it."""
        late = [(s, r) for s, r in batch if past_grace(s, self.today, self.grace)]
        kept = len(batch) - len(late)
        self.summary.warn(
            region,
            f"cannot look up the primaries of {len(batch)} due copies there "
            f"({describe_error(exc)}); {kept} kept for now, {len(late)} deleted: past their "
            f"DeleteOn by over {self.grace} days",
        )
        return [("delete", s, r) for s, r in late]


def kept_primaries(ec2, ids):
    """{primary id: "key=value" that keeps it} among these ids (a filter, not SnapshotIds:
    a primary already deleted is no error)."""
    snaps = paginate(
        ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[{"Name": "snapshot-id", "Values": ids}],
    )
    kept = {}
    for snap in snaps:
        tags = tag_map(snap)
        key = keep_forever_key(tags)
        if key:
            kept[snap["SnapshotId"]] = f"{TAG_KEEP_FOREVER}={tags[key]}"
    return kept


ACTIONS = {
    "delete": delete_snapshot,
    "keep": keep_copy,
    "archive": archive_snapshot,
    "note": note_standard,
    "restore": restore_snapshot,
    "restored": restore_finished,
}


class Judge:
    """What the sweep does, snapshot by snapshot as the pages arrive: shows each to the
    coverage check and to LastBackups, counts and warns, and returns the work items
    ("delete" or "keep", snapshot, detail) that may start now."""

    def __init__(self, summary, now, coverage, last, lookup, locks, drills=None, tiers=None):
        self.summary, self.now, self.today = summary, now, utc_today(now)
        self.coverage, self.last, self.lookup, self.locks = coverage, last, lookup, locks
        self.drills, self.tiers = drills, tiers

    def snapshot(self, snapshot):
        sid = snapshot.get("SnapshotId", "?")
        try:  # an odd snapshot, or a bug of ours, costs that snapshot only: it is kept
            if self.coverage:
                self.coverage.see(snapshot)
            self.check_lock(snapshot)
            if self.drills:
                self.drills.see(snapshot)
            due = self.due(snapshot)
            released = self.last.offer(snapshot, due)
            items = [item for snap, why in released for item in self.lookup.add(snap, why)]
            goes = any(snap["SnapshotId"] == snapshot["SnapshotId"] for snap, _ in released)
            return items + (self.tiers.see(snapshot, bool(due)) if self.tiers and not goes else [])
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.error(sid, exc, "not judged, so kept")
            return []

    def check_lock(self, snapshot):
        """A snapshot tagged Lock and still not locked a day on: a warning, LocksMissing."""
        why = None if self.locks is None else missing_lock(snapshot, self.locks, self.now)
        if why:
            self.summary.warn(snapshot["SnapshotId"], why)
            self.summary.count("lock_missing")

    def due(self, snapshot):
        """The reason when it is due for deletion, else None (and the counts say why)."""
        action, reason = verdict(snapshot, self.today)
        sid, tags, summary = snapshot["SnapshotId"], tag_map(snapshot), self.summary
        warning = near_miss(tags)
        if warning:
            summary.warn(sid, warning)
        if action == "warn":
            summary.tag_error(sid, TAG_DELETE_ON, tags.get(TAG_DELETE_ON), reason)
        elif action == "hold":
            summary.skip(sid, f"{reason}: kept although due")
            summary.count("kept_forever")
        elif action != "delete":
            summary.count("kept_forever" if action == "forever" else "kept")
        elif sid in (self.locks or {}):  # a person extended its lock: never unlocked here
            summary.warn(sid, lock_note(self.locks[sid]))
            summary.skip(sid, "locked")
            return None
        return reason if action == "delete" else None

    def known(self, volumes):
        """After the last page, the volumes the creator must snapshot (None: they could not
        be read, so every volume keeps its newest and coverage is not checked): the
        coverage check's, and the work items for the held snapshots of the other volumes."""
        if volumes is None:
            self.coverage = None
            return []
        self.coverage.know(volumes)
        released = self.last.watch(volumes)
        return [item for snap, why in released for item in self.lookup.add(snap, why)]

    def end(self, now, max_age, lag):
        """After the last page: report what LastBackups kept, look up the last copies."""
        for key, snapshot, reason in self.last.kept():
            report_held(key, snapshot, reason, self.summary, now, max_age, lag)
        tiers = self.tiers.end(self.last.holds, self.last.is_newest) if self.tiers else []
        return self.lookup.flush() + tiers


def sweep(ec2, summary, budget, judge, ends):
    """Judge each automated snapshot as its page arrives and act on it, WORKERS at a time;
    after the last page, read the volumes to back up (with the coverage check). Returns
    (None, items done) once every page is judged, or (why it stopped early, items done)
    when Lambda time ran short."""
    listed = []  # set once the last page has been judged

    def work():
        for snapshot in automated_snapshots(ec2):
            yield from judge.snapshot(snapshot)
        if judge.coverage:  # an invocation that hands the rest over never reads them
            yield from judge.known(backed_up(ec2, summary))
        yield from judge.end(*ends)
        listed.append(True)

    try:
        started, stopped = in_parallel(
            work(),
            lambda item: act(ec2, item, summary),
            budget,
            lambda item, exc: summary.error(item[1]["SnapshotId"], exc),
        )
        why = None if listed and not stopped else f"{budget.left():.0f} s of Lambda time left"
    except OutOfTime as exc:
        started, stopped, why = 0, 0, str(exc)
    return why, started - stopped
