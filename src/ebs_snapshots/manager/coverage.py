"""Coverage: volumes without a recent backup, copy or vault copy, and expired copies."""

from ebs_snapshots.common.aws import enabled_regions, make_client, paginate, volume_backup_tags
from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.tags import (
    AUTOMATED,
    LIVE_STATES,
    TAG_BACKUP,
    TAG_COPY_DEST,
    TAG_DELETE_ON,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_SOURCE_VOLUME,
    TAG_TYPE,
    clean_regions,
    is_kept_forever,
    parse_date,
    tag_map,
)
from ebs_snapshots.common.vault import vault_target
from ebs_snapshots.common.vault_access import vault_client, vault_copy_states
from ebs_snapshots.manager.archive import in_archive
from ebs_snapshots.manager.last_backups import backed_up_volumes

# A volume is protected when it has a completed snapshot younger than this: the creator
# runs daily, so 26 hours leaves it two hours of slack.
COVERAGE_ENV, COVERAGE_MAX_AGE_HOURS = "COVERAGE_MAX_AGE_HOURS", 26
# Copies of this region's snapshots this many days past DeleteOn, in a region where they
# should have been deleted, mean that no manager runs there.
EXPIRED_COPY_DAYS = 2
MAX_REASONS = 3  # per unprotected volume, in the summary


class Coverage:
    """What the coverage check keeps while the sweep lists the region's snapshots: each
    volume's newest completed snapshot, and its snapshots of the copy window (the last
    COVERAGE_MAX_AGE_HOURS + COPY_MAX_LAG_HOURS), which a destination must hold a completed
    copy of. Nothing is kept for other snapshots. The volumes are read once the listing is
    over (``know``); then only the protected ones' are kept."""

    def __init__(self, now, max_age, lag, enabled, region):
        self.now, self.max_age, self.lag = now, max_age, lag
        self.enabled, self.region = enabled, region
        self.cutoff = now - max_age  # attached since: not expected yet
        self.volumes = self.protected = None  # known once the listing is over
        self.newest = {}  # volume id: start time of its newest completed snapshot
        self.recent = {}  # snapshot id: (volume id, start time, its Copy_Dest regions)
        self.dests = set()  # every region this region's primaries ask copies for
        self.vaults = set()  # (vault account, region) that this region's primaries ask for
        self.account = None  # this account: its vault copies are tagged Source_Account=it

    def see(self, snapshot):
        """A snapshot counts for the volume EC2 says it was taken of, whatever its tags say (a
        copy's VolumeId is arbitrary, no volume of this region; a copy asks for no copies)."""
        tags, vid = tag_map(snapshot), snapshot.get("VolumeId")
        dests = clean_regions(tags.get(TAG_COPY_DEST, ""), self.enabled, self.region)[0]
        self.dests.update(dests)
        account, vregions, _ = vault_target(tags, self.enabled, self.region)
        self.vaults.update((account, r) for r in vregions)
        self.account = self.account or snapshot.get("OwnerId")
        dests = dests + [f"{account}/{r}" for r in vregions]  # a vault: "account/region"
        if not vid or snapshot.get("State") != "completed":
            return
        if in_archive(snapshot):  # it cannot be restored quickly: not a recent backup
            return
        start = snapshot["StartTime"]
        self.newest[vid] = max(start, self.newest.get(vid, start))
        if dests and start >= self.now - self.max_age - self.lag:
            self.recent[snapshot["SnapshotId"]] = (vid, start, dests)

    def know(self, volumes):
        """The volumes the creator must snapshot (backed_up_volumes): the protected ones are
        those attached before the threshold; what was kept for any other volume goes."""
        self.volumes = volumes
        self.protected = {
            vid: who
            for vid, who in volumes.items()
            if who["enabled"] and (who["attached"] is None or who["attached"] <= self.cutoff)
        }
        self.newest = {v: start for v, start in self.newest.items() if v in self.protected}
        self.recent = {sid: r for sid, r in self.recent.items() if r[0] in self.protected}

    def unprotected(self, copies, unread=()):
        """{volume id: [reasons]} given ``copies``, {(region, primary id): copy state}; the
        regions in ``unread`` could not be listed: their copies are not judged."""
        found, recent = {}, {}
        for sid, (vid, start, dests) in self.recent.items():
            recent.setdefault(vid, []).append((sid, start, dests))
        hours = f"{self.max_age.total_seconds() / 3600:g}"
        for vid in self.protected:
            last = self.newest.get(vid)
            if last is None or last <= self.cutoff:
                newest = f"newest {last:%Y-%m-%d %H:%M} UTC" if last else "none at all"
                found.setdefault(vid, []).append(
                    f"no completed snapshot in the last {hours} h; {newest}"
                )
            mine = [r for r in recent.get(vid, []) if set(r[2]) - set(unread)]
            mine = [(sid, start, [d for d in ds if d not in unread]) for sid, start, ds in mine]
            gaps = self.copy_gaps(sorted(mine, key=lambda r: r[1]), copies)
            if gaps:
                found.setdefault(vid, []).extend(gaps)
        return found

    def copy_gaps(self, recent, copies):
        """Why a volume lacks a recent copy: for each region that its snapshots of the copy
        window ask for, once one of them has had the copy allowance to get there, no
        completed copy there of any of them. Whatever the retention."""
        window = f"{(self.max_age + self.lag).total_seconds() / 3600:g}"
        due_by = self.now - self.lag
        gaps = []
        for dest in sorted({d for _, start, ds in recent if start <= due_by for d in ds}):
            asked = [sid for sid, _, ds in recent if dest in ds]
            if any(copies.get((dest, sid)) == "completed" for sid in asked):
                continue
            states = {copies.get((dest, sid)) for sid in asked}
            detail = "a copy failed" if "error" in states else "no copy at all"
            detail = "a copy still pending" if "pending" in states else detail
            gaps.append(
                f"no completed copy in {dest} of a snapshot of the last {window} h ({detail})"
            )
        return gaps


class ExpiredCopies:
    """Copies of this region's snapshots in a destination more than EXPIRED_COPY_DAYS past
    their DeleteOn, not KeepForever, and not the newest copy of their source volume (which
    that region's manager keeps for a while): they show that no manager runs there."""

    def __init__(self, today):
        self.today = today
        self.per_volume = {}  # source volume: [newest mark, is it late?, late copies]
        self.unknown = 0  # late copies without Source_VolumeId (no newest-copy rule for them)

    def see(self, copy, tags):
        delete_on = parse_date(tags.get(TAG_DELETE_ON))
        late = bool(delete_on) and (self.today - delete_on).days > EXPIRED_COPY_DAYS
        late = late and not is_kept_forever(tags)
        volume = tags.get(TAG_SOURCE_VOLUME)
        if not volume:
            self.unknown += late
            return
        mark = (copy["StartTime"], copy["SnapshotId"])
        entry = self.per_volume.setdefault(volume, [None, False, 0])
        entry[2] += late
        if copy.get("State") == "completed" and (entry[0] is None or mark > entry[0]):
            entry[0], entry[1] = mark, late

    def count(self):
        return self.unknown + sum(n - newest_late for _, newest_late, n in self.per_volume.values())


def start_coverage(ec2, now, max_age, lag, summary):
    """The coverage check's read before the sweep (the enabled regions, which the
    snapshots' Copy_Dest tags are read against); None, with the reason recorded, when it
    cannot be made."""
    try:
        return Coverage(now, max_age, lag, enabled_regions(ec2), summary.region)
    except OutOfTime as exc:
        summary.warn(summary.region, f"coverage not checked: {exc}")
    except Exception as exc:
        summary.error(summary.region, exc, "coverage not checked")
    summary.warn(summary.region, "volumes unknown: every volume's newest snapshot kept this run")
    return None


def backed_up(ec2, summary):
    """The coverage check's reads once the listing is over (Backup instances, volume
    opt-outs): backed_up_volumes, or None, with the reason recorded, when they cannot be
    made. Read after the listing, not before, so that an invocation that hands the rest
    over does not read ten thousand instances for nothing; OutOfTime is raised (the rest
    is handed over)."""
    filters = [
        {"Name": "tag-key", "Values": [TAG_BACKUP]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    try:
        pages = paginate(ec2, "describe_instances", "Reservations", Filters=filters)
        instances = (i for reservation in pages for i in reservation["Instances"])
        return backed_up_volumes(instances, volume_backup_tags(ec2))
    except OutOfTime:
        raise
    except Exception as exc:
        summary.error(summary.region, exc, "coverage not checked")
    summary.warn(summary.region, "volumes unknown: every volume's newest snapshot kept this run")
    return None


def copies_of(coverage, dest_ec2, today):
    """({(destination, primary id): state} of the copies the check looks for, a completed
    copy winning over another one of the same primary; ExpiredCopies of the destination)."""
    dest = dest_ec2.meta.region_name
    found, expired = {}, ExpiredCopies(today)
    copies = paginate(
        dest_ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:" + TAG_TYPE, "Values": [AUTOMATED]},
            {"Name": "tag:" + TAG_SOURCE_REGION, "Values": [coverage.region]},
        ],
    )
    for copy in copies:
        tags = tag_map(copy)
        expired.see(copy, tags)
        source = tags.get(TAG_SOURCE_SNAPSHOT)
        state = "archived" if in_archive(copy) else copy["State"]  # archived: no quick restore
        if source in coverage.recent and found.get((dest, source)) != "completed":
            found[(dest, source)] = state
    return found, expired


def finish_coverage(coverage, summary, budget, today):
    """One listing per destination region, then each unprotected volume into the summary
    (``unprotected``, and the count that becomes the UnprotectedVolumes metric), and each
    region where expired copies are left (ExpiredCopiesLeft). A destination that cannot be
    read is one failure: its copies are not judged, everything else is."""
    copies, left, unread = {}, {}, set()
    for dest in sorted(coverage.dests):
        try:
            found, expired = copies_of(coverage, make_client("ec2", dest, budget), today)
        except OutOfTime as exc:
            summary.warn(summary.region, f"coverage not checked: {exc}")
            return
        except Exception as exc:
            summary.error(dest, exc, "copies there not checked")
            unread.add(dest)
            continue
        copies |= found
        left[dest] = expired.count()
    vault_copies, vault_unread = vaults_coverage(coverage, summary, budget)
    copies, unread = copies | vault_copies, unread | vault_unread
    report_unprotected(coverage, coverage.unprotected(copies, unread), summary)
    report_expired_copies(left, summary)


def vaults_coverage(coverage, summary, budget):
    """({("account/region", primary id): state} of the vault copies of this region's recent
    primaries, read through each vault's writer role (its read-only DescribeSnapshots); the
    vaults that could not be read: one failure each, their copies not judged)."""
    copies, unread = {}, set()
    for account, vregion in sorted(coverage.vaults):
        where = f"{account}/{vregion}"
        try:
            vault_ec2 = vault_client(account, vregion, budget)
            states, _ = vault_copy_states(vault_ec2, coverage.region, str(coverage.account))
            copies |= {(where, s): state for s, state in states.items() if s in coverage.recent}
        except OutOfTime as exc:
            summary.warn(where, f"vault copies there not checked: {exc}")
            unread.add(where)
        except Exception as exc:
            summary.error(where, exc, "vault copies there not checked")
            unread.add(where)
    return copies, unread


def report_unprotected(coverage, unprotected, summary):
    """Each unprotected volume, the protected count, and the volumes not yet due."""
    for vid, reasons in sorted(unprotected.items()):
        more = f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else ""
        who = {k: v for k, v in coverage.protected[vid].items() if k in ("instance_id", "name")}
        summary.add(
            "unprotected",
            "WARN",
            volume_id=vid,
            **who,
            reason="; ".join(reasons[:MAX_REASONS]) + more,
        )
    summary.count("unprotected", 0)
    summary.count("protected", len(coverage.protected) - summary.data["counts"]["unprotected"])
    for vid, who in sorted(coverage.volumes.items()):
        if who["enabled"] and vid not in coverage.protected:  # attached since the threshold
            expected = who["attached"] + coverage.max_age
            summary.add(
                "not_yet_due",
                volume_id=vid,
                instance_id=who["instance_id"],
                name=who["name"],
                expected_by=f"{expected:%Y-%m-%d %H:%M} UTC",
            )


def report_expired_copies(left, summary):
    if left:  # the metric exists where this region has copies to look at
        summary.count("expired_copies_left", 0)
    for dest, count in sorted(left.items()):
        if count:
            summary.warn(
                dest,
                f"no manager is deleting expired copies in {dest}: {count} copies of this "
                f"region's snapshots are over {EXPIRED_COPY_DAYS} days past their DeleteOn. "
                "Deploy the manager there (template parameter Jobs=manager)",
            )
            summary.count("expired_copies_left", count)
