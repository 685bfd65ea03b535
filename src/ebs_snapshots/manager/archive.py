"""The archive tier: Archive=Yes snapshots archived, Restore requests heard."""

import functools
import re
from datetime import UTC, timedelta

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import batches, describe_error, error_code, paginate
from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.events import utc_today
from ebs_snapshots.common.tags import (
    MAX_RETENTION_DAYS,
    TAG_ARCHIVE,
    TAG_COPY_DEST,
    TAG_COPY_RETENTION,
    TAG_DELETE_ON,
    TAG_SOURCE_ACCOUNT,
    TAG_SOURCE_SNAPSHOT,
    TAG_VAULT_REGION,
    TAG_VAULT_RETENTION,
    clean_regions,
    copy_until,
    keep_forever_key,
    parse_bool,
    parse_count,
    parse_date,
    tag_map,
)
from ebs_snapshots.common.vault import vault_target

# The archive tier (EBS user guide, "Archive Amazon EBS snapshots" and "Pricing and billing
# for archiving"): a full copy of the snapshot at a quarter of the standard price a GB-month,
# billed for 90 days at least (deleted sooner: the rest is billed), usable again only after a
# restore of up to 72 hours; copying or sharing it is not possible once archived.
ARCHIVE_AFTER = timedelta(days=1)  # the copier has had a day to start its copies
ARCHIVE_MIN_DAYS = 90
TAG_ARCHIVE_NOTE = "Archive_Note"  # why an Archive=Yes snapshot stays standard: said once
TAG_RESTORE, TAG_RESTORE_REQUESTED = "Restore", "Restore_Requested"
PERMANENT = "permanent"
# DescribeSnapshotTierStatus's LastTieringOperationStatus (EC2 API reference,
# "SnapshotTierStatus"): how a restore someone asked for has gone.
RESTORE_STATES = {
    "temporary-restore-in-progress": "restoring",
    "permanent-restore-in-progress": "restoring",
    "temporary-restore-completed": "ready",
    "permanent-restore-completed": "ready",
    "temporary-restore-failed": "failed",
    "permanent-restore-failed": "failed",
}


def in_archive(snapshot):
    """Whether a snapshot is archived: in the archive tier, or temporarily restored from it
    (AWS shows that one as standard until RestoreExpiryTime, then archives it again)."""
    return snapshot.get("StorageTier") == "archive" or bool(snapshot.get("RestoreExpiryTime"))


def archive_verdict(snapshot, now):
    """(action, reason) for a snapshot tagged Archive=Yes and not archived; None for any
    other. Actions: "archive"; "wait" (not completed, or under a day old); "standard" (it
    stays in the standard tier: archiving it would cost more than keeping it there)."""
    tags = tag_map(snapshot)
    if parse_bool(tags.get(TAG_ARCHIVE, "")) is not True or in_archive(snapshot):
        return None
    if snapshot.get("State") != "completed" or snapshot["StartTime"] > now - ARCHIVE_AFTER:
        return "wait", "not yet completed and a day old"
    key = keep_forever_key(tags)
    if key:
        return "archive", f"{key}={tags[key]}"
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if delete_on is None:
        return "standard", f"its DeleteOn {tags.get(TAG_DELETE_ON)!r} cannot be read"
    left = (delete_on - utc_today(now)).days
    if left < ARCHIVE_MIN_DAYS:
        return "standard", (
            f"{left} days to its DeleteOn {delete_on}, under the archive's {ARCHIVE_MIN_DAYS}-day "
            "minimum: AWS would bill the rest of the 90 days"
        )
    return "archive", f"{left} days to its DeleteOn {delete_on}"


def restore_request(value):
    """(RestoreSnapshotTier's parameters, or None; warning or None) for a Restore tag: a
    whole number of days (a temporary restore; AWS checks the range) or permanent."""
    if value.strip().lower() == PERMANENT:
        return {"PermanentRestore": True}, None
    days, problem = parse_count(value, TAG_RESTORE, MAX_RETENTION_DAYS)
    if days is None:
        return None, f"{problem} nor {PERMANENT}; not restored"
    return {"TemporaryRestoreDays": days}, problem


def write_tag(ec2, sid, key, value, summary):
    """One tag on a snapshot (in a dry run, only whether it would be allowed); the
    ClientError when AWS refuses it, else None."""
    params = {"Resources": [sid], "Tags": [{"Key": key, "Value": value}]}
    if summary.dry_run:
        summary.probe("ec2:CreateTags", summary.region, ec2.create_tags, **params)
        return None
    try:
        ec2.create_tags(**params)
    except ClientError as exc:
        return exc
    return None


class Tiers:
    """The archive tier, as the sweep lists the region: counts the archived snapshots, takes
    each Restore request at once, says once why an Archive=Yes snapshot stays standard, and
    keeps the snapshots to archive and those being restored for after the last page: one
    DescribeSnapshotTierStatus per LOOKUP_BATCH of them (an archive already under way is
    not asked for twice) and, for primaries with Copy_Dest or a vault, one DescribeSnapshots
    per batch and destination: an archived snapshot can be neither copied nor shared, so it
    waits for its copies."""

    def __init__(self, summary, now, client, vault, enabled=None):
        self.summary, self.now, self.client = summary, now, client  # client(region)
        self.vault = functools.cache(vault)  # vault(account, region): through its writer role
        self.enabled = enabled  # the regions a Copy_Dest may name (None: not known)
        self.candidates, self.requested = {}, []  # candidates: id: (snapshot, why)
        self.held = []  # due snapshots with a restore request: see()
        self.seen, self.archived = set(), 0  # pages shift as they are read: once each

    def see(self, snapshot, due=False):
        """The work items this snapshot asks for now (a restore, a note). A due snapshot
        that the sweep may keep (a volume's last backup) is never archived, but a restore
        asked for on it is made once the sweep knows it keeps it (end): it may be the very
        backup someone wants back."""
        tags, sid = tag_map(snapshot), snapshot["SnapshotId"]
        if sid in self.seen:  # pages shift as they are read: one listed twice acts once
            return []
        self.archived += snapshot.get("StorageTier") == "archive"  # a gauge: a shift is noise
        verdict = None if due else archive_verdict(snapshot, self.now)
        asked = TAG_RESTORE in tags or TAG_RESTORE_REQUESTED in tags
        if asked or verdict:
            self.seen.add(sid)  # only those that ask for work: memory stays with the volumes
        if asked:
            if due:
                self.held.append(snapshot)
                return []
            return self.restore(snapshot)
        action, why = verdict or (None, None)
        if action == "archive":
            self.candidates[sid] = (snapshot, why)
        if action == "standard" and TAG_ARCHIVE_NOTE not in tags:
            return [("note", snapshot, why)]
        return []

    def restore(self, snapshot):
        """A restore asked for (Restore) now, or one asked for before (Restore_Requested),
        whose progress end() reads."""
        tags, sid = tag_map(snapshot), snapshot["SnapshotId"]
        if TAG_RESTORE not in tags:
            self.requested.append(snapshot)
            return []
        params, problem = restore_request(tags[TAG_RESTORE])
        if problem:
            self.summary.tag_error(sid, TAG_RESTORE, tags[TAG_RESTORE], problem)
        return [("restore", snapshot, params)] if params else []

    def end(self, kept=lambda snapshot_id: True, newest=lambda snapshot: False):
        """After the last page: the restores of due snapshots the sweep ``kept``, the
        restores' progress, then the archives that may start: never a backed-up volume's
        ``newest`` snapshot, its quick restore (after an outage of the creator, an
        Archive=Yes monthly may be all there is; an Archive tag anyone wrote, too)."""
        if self.archived:  # the metric is written either way (0 when none)
            self.summary.count("archived", self.archived)
        items = []
        for snapshot in self.held:
            items += self.restore(snapshot) if kept(snapshot["SnapshotId"]) else []
        for batch in batches(self.requested):
            items += self.restores(batch)
        candidates = []
        for snapshot, why in self.candidates.values():
            if newest(snapshot):
                why = "its volume's newest snapshot: archived once a newer one completes"
                self.summary.skip(snapshot["SnapshotId"], why)
            else:
                candidates.append((snapshot, why))
        for batch in batches(candidates):
            items += self.archives(batch)
        return items

    def statuses(self, batch):
        """{snapshot id: its tier status} for these snapshots, or None (a warning)."""
        ids = [snapshot["SnapshotId"] for snapshot, *_ in batch]
        try:
            found = paginate(
                self.client(self.summary.region),
                "describe_snapshot_tier_status",
                "SnapshotTierStatuses",
                Filters=[{"Name": "snapshot-id", "Values": ids}],
            )
            return {status["SnapshotId"]: status for status in found}
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.warn(self.summary.region, f"tier status not read: {describe_error(exc)}")
            return None

    def restores(self, batch):
        """Restores someone asked for: one still under way is reported (restoring); one
        done or failed is said once, and its Restore_Requested tag goes."""
        statuses = self.statuses([(s,) for s in batch]) or {}
        items = []
        for snapshot in batch:
            status = statuses.get(snapshot["SnapshotId"], {})
            state = RESTORE_STATES.get(status.get("LastTieringOperationStatus"), "restoring")
            if state == "restoring":  # or its status could not be read: still waited for
                progress = status.get("LastTieringProgress")
                self.summary.add(
                    "restoring",
                    snapshot_id=snapshot["SnapshotId"],
                    requested=tag_map(snapshot)[TAG_RESTORE_REQUESTED],
                    progress="unknown" if progress is None else f"{progress}%",
                )
            else:
                items.append(("restored", snapshot, status))
        return items

    def archives(self, batch):
        """The candidates whose archive may start: not under way already, and every copy
        their Copy_Dest and vault ask for completed."""
        statuses = self.statuses(batch)
        if statuses is None:
            return []
        waiting = []
        for snapshot, why in batch:
            status = statuses.get(snapshot["SnapshotId"], {})
            last = status.get("LastTieringOperationStatus")
            if last == "archival-in-progress":
                self.summary.count("archived")  # AWS shows it standard until it is done
                continue
            if last == "archival-failed":  # asked again: AWS says why in the detail
                detail = status.get("LastTieringOperationStatusDetail") or last
                self.summary.warn(snapshot["SnapshotId"], f"its last archive failed: {detail}")
            waiting.append((snapshot, why))
        copied = self.copied([s for s, _ in waiting])
        return [("archive", s, why) for s, why in waiting if s["SnapshotId"] in copied]

    def copied(self, snapshots):
        """Ids of these primaries that have a completed copy in every Copy_Dest region and
        vault they ask for (or ask for none); a copy is never looked for in the primary's own
        region."""
        missing = {s["SnapshotId"]: self.dests(s) for s in snapshots}  # id: regions to see
        owner = next((s.get("OwnerId") for s in snapshots), None)  # this account
        for dest in sorted(set().union(*missing.values())):
            asked = sorted(sid for sid, regions in missing.items() if dest in regions)
            for sid in self.copies_in(dest, asked, owner):
                missing[sid].discard(dest)
        for sid, regions in sorted(missing.items()):
            if regions:
                where = ", ".join(sorted(regions))
                self.summary.skip(sid, f"archived once its copies in {where} are complete")
        return {sid for sid, regions in missing.items() if not regions}

    def dests(self, snapshot):
        """Where the copier will still make a copy of it, so where its archive waits for one:
        its Copy_Dest regions (enabled ones) and its vault regions as "account/region" (a copy
        or a staging copy carries neither: it is never copied), each only while the copies'
        own DeleteOn is ahead, as the copier decides (copy_until): a copy it will never make
        is waited for no more than it is by the copier."""
        tags, home, today = tag_map(snapshot), self.summary.region, utc_today(self.now)
        created = snapshot["StartTime"].astimezone(UTC).date()
        found = set()
        until = copy_until(tags, created, TAG_COPY_RETENTION)
        if until is not None and until > today:
            raw = tags.get(TAG_COPY_DEST, "")
            found |= set(clean_regions(raw, self.known(raw), home)[0])
        until = copy_until(tags, created, TAG_VAULT_RETENTION)
        if until is not None and until > today:
            known = self.known(tags.get(TAG_VAULT_REGION, ""))
            account, vregions, _ = vault_target(tags, known, home)
            found |= {f"{account}/{r}" for r in vregions if account}
        return found

    def known(self, regions):
        """The enabled regions, or (not read this run) the regions named: all taken as real."""
        return self.enabled if self.enabled is not None else set(re.split(r"[\s,]+", regions))

    def copies_in(self, dest, ids, owner):
        """Ids among ``ids`` with a completed copy in ``dest`` (none when it cannot be read:
        their archive waits, with a warning). In a vault ("account/region"), shared with
        other sources, only copies tagged Source_Account=``owner`` (this account) count."""
        try:
            account, _, region = dest.rpartition("/")  # a vault: read through its writer role
            client = self.vault(account, region) if account else self.client(region)
            filters = [{"Name": "tag:" + TAG_SOURCE_SNAPSHOT, "Values": ids}]
            if account:
                filters.append({"Name": "tag:" + TAG_SOURCE_ACCOUNT, "Values": [str(owner)]})
            copies = paginate(
                client, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters
            )
            return {
                tag_map(c)[TAG_SOURCE_SNAPSHOT] for c in copies if c.get("State") == "completed"
            }
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.warn(dest, f"copies not read, archives wait: {describe_error(exc)}")
            return set()


def archive_snapshot(ec2, snapshot, why, summary):
    sid = snapshot["SnapshotId"]
    params = {"SnapshotId": sid, "StorageTier": "archive"}
    if summary.dry_run:
        summary.probe("ec2:ModifySnapshotTier", summary.region, ec2.modify_snapshot_tier, **params)
    else:
        try:
            ec2.modify_snapshot_tier(**params)
        except ClientError as exc:  # it stays standard; the next run tries again
            if error_code(exc) == "InvalidSnapshot.NotFound":
                summary.skip(sid, "already deleted")
            else:
                summary.error(sid, exc, "not archived")
            return
        summary.count("archived")
    summary.did("archive", snapshot_id=sid, volume_id=snapshot.get("VolumeId"), reason=why)


def note_standard(ec2, snapshot, why, summary):
    """An Archive=Yes snapshot that stays standard: said once, and the reason kept on it."""
    sid = snapshot["SnapshotId"]
    note = f"{summary.data['date']}: stays standard: {why}"[:256]  # EC2's longest tag value
    refused = write_tag(ec2, sid, TAG_ARCHIVE_NOTE, note, summary)
    if refused:  # said again next run; nothing else depends on the note
        summary.warn(sid, f"{TAG_ARCHIVE_NOTE} not written: {describe_error(refused)}")
    summary.skip(sid, f"not archived: {why}")


def restore_snapshot(ec2, snapshot, params, summary):
    """RestoreSnapshotTier once, then Restore=... becomes Restore_Requested=<date>; a
    permanent restore also drops Archive=Yes, so that it is not archived again."""
    sid, value = snapshot["SnapshotId"], tag_map(snapshot)[TAG_RESTORE]
    if not in_archive(snapshot):  # left as it is: the person may have tagged the wrong one
        summary.warn(sid, f"{TAG_RESTORE}={value}, but it is not archived: nothing to restore")
        return
    if summary.dry_run:
        call = ec2.restore_snapshot_tier
        summary.probe("ec2:RestoreSnapshotTier", summary.region, call, SnapshotId=sid, **params)
    else:
        try:
            ec2.restore_snapshot_tier(SnapshotId=sid, **params)
        except ClientError as exc:
            summary.error(sid, exc, f"{TAG_RESTORE}={value} not done; the next run asks again")
            return
        replace_restore_tag(ec2, sid, params, summary)
    summary.did("restore", snapshot_id=sid, restore=value)
    summary.count("restoring")


def replace_restore_tag(ec2, sid, params, summary):
    requested = [{"Key": TAG_RESTORE_REQUESTED, "Value": summary.data["date"]}]
    gone = [TAG_RESTORE] + ([TAG_ARCHIVE] if params.get("PermanentRestore") else [])
    try:
        ec2.create_tags(Resources=[sid], Tags=requested)
        ec2.delete_tags(Resources=[sid], Tags=[{"Key": key} for key in gone])
    except ClientError as exc:  # AWS restores it anyway; Restore stays, asked again next run
        summary.error(sid, exc, f"restore started, but {TAG_RESTORE} not replaced")


def restore_finished(ec2, snapshot, status, summary):
    """A restore that is done (or failed): said once, and Restore_Requested removed."""
    sid, state = snapshot["SnapshotId"], status["LastTieringOperationStatus"]
    if not summary.dry_run:
        ec2.delete_tags(Resources=[sid], Tags=[{"Key": TAG_RESTORE_REQUESTED}])
    if RESTORE_STATES[state] == "failed":
        detail = status.get("LastTieringOperationStatusDetail") or state
        summary.fail(sid, f"restore from the archive tier failed: {detail}")
        return
    until = status.get("RestoreExpiryTime")
    until = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "for good"
    summary.add("restored", snapshot_id=sid, ready=until, volume_id=snapshot.get("VolumeId"))
