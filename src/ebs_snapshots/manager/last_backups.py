"""Each volume's last backup, and each copy's: never deleted, whatever the tags say."""

from datetime import timedelta

from ebs_snapshots.common.tags import (
    LIVE_STATES,
    MAX_RETENTION_DAYS,
    TAG_DELETE_ON,
    TAG_NAME,
    TAG_SOURCE_ACCOUNT,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_SOURCE_VOLUME,
    backup_enabled,
    count_or,
    opted_out,
    parse_date,
    tag_map,
)

# A copy cannot see its source volume, so the newest copy of each source volume is kept
# past its DeleteOn for this many days at most: enough to outlast a source region's outage,
# and nothing is kept forever by this rule.
GRACE_ENV, LAST_COPY_GRACE_DAYS = "LAST_COPY_GRACE_DAYS", 14


def grace_days(value):
    """(days, warning or None) for LAST_COPY_GRACE_DAYS."""
    value = value if value and value.strip() else None  # empty: as if unset
    return count_or(value, GRACE_ENV, MAX_RETENTION_DAYS, LAST_COPY_GRACE_DAYS)


def past_grace(snapshot, today, grace):
    """Whether a snapshot is ``grace`` days or more past its DeleteOn."""
    delete_on = parse_date(tag_map(snapshot).get(TAG_DELETE_ON))
    return delete_on is not None and delete_on + timedelta(days=grace) <= today


def backed_up_volumes(instances, volume_backup):
    """{volume id: {instance_id, name, attached, enabled}}: every EBS volume the tags say the
    creator must snapshot, as the creator reads them (enabled True), and those of an
    instance whose Backup tag cannot be read (enabled None: the creator skips them, with a
    warning, but their last backup is kept: a typo must never cost one)."""
    wanted = {}
    for instance in instances:
        tags = tag_map(instance)
        state = instance.get("State", {}).get("Name")
        enabled = backup_enabled(tags)
        if state not in LIVE_STATES or enabled is False:
            continue
        for mapping in instance.get("BlockDeviceMappings", []):
            ebs = mapping.get("Ebs")
            if ebs and not opted_out(volume_backup.get(ebs["VolumeId"])):
                wanted[ebs["VolumeId"]] = {
                    "instance_id": instance["InstanceId"],
                    "name": tags.get(TAG_NAME, ""),
                    "attached": ebs.get("AttachTime"),
                    "enabled": enabled,
                    "zone": instance.get("Placement", {}).get("AvailabilityZone"),
                }
    return wanted


class LastBackups:
    """The newest completed snapshot of a volume is never deleted while the volume is still
    backed up (an outage of the creator must not leave it with none); a copy, which cannot
    see its source volume, is kept as the newest copy of that volume (Source_VolumeId) for
    LAST_COPY_GRACE_DAYS past its DeleteOn. Once a newer one completes, it expires.

    A snapshot is its volume's by the VolumeId EC2 gives it, whatever its tags say: a copy's
    VolumeId is arbitrary (EC2 API reference, Snapshot), never a volume backed up here, so a
    tag (Source_SnapshotId, Vault_StagingOf) written on a backup cannot release it.

    ``offer`` is shown every listed snapshot, with the reason when it is due, and returns
    the due ones that may go now. ``held`` keeps, per key (a volume, a source volume's
    copies), at most the one it holds. The run learns which volumes are backed up once the
    listing is over (``watch``): until then every volume counts as backed up, so that its
    newest snapshot is held."""

    def __init__(self, backed_up, today, grace):
        self.backed_up, self.today, self.grace = backed_up, today, grace  # backed_up: None=all
        self.newest = {}  # key: (start time, snapshot id) of the newest completed one
        self.held = {}  # key: (snapshot, reason)
        self.holders = {}  # snapshot id: how many keys hold it

    def keys(self, snapshot):
        """What a completed snapshot may be the newest of: its volume, and for a copy its
        source volume's copies (until LAST_COPY_GRACE_DAYS past its DeleteOn). In a vault
        shared by several sources, a source volume is its account's (Source_Account, which
        the writer role binds to the caller): another source's copy, whatever volume it
        names, cannot become the newest of this one's and release it."""
        found, vid = [], snapshot.get("VolumeId")
        if vid and (self.backed_up is None or vid in self.backed_up):
            found.append(("volume", vid))
        tags = tag_map(snapshot)
        source = tags.get(TAG_SOURCE_VOLUME)
        if (
            TAG_SOURCE_SNAPSHOT in tags
            and source
            and not past_grace(snapshot, self.today, self.grace)
        ):
            where = tags.get(TAG_SOURCE_REGION)
            found.append(("copy", where, source, tags.get(TAG_SOURCE_ACCOUNT)))
        return found

    def offer(self, snapshot, due):
        keys = self.keys(snapshot) if snapshot.get("State") == "completed" else []
        mark = (snapshot["StartTime"], snapshot["SnapshotId"])
        if any(self.newest.get(key) == mark for key in keys):
            return []  # listed again (pages shift while they are read): seen already
        newest = [key for key in keys if key not in self.newest or mark > self.newest[key]]
        released = []
        for key in newest:
            self.newest[key] = mark
            released += self.release(key)
            if due:
                self.held[key] = (snapshot, due)
                self.holders[snapshot["SnapshotId"]] = (
                    self.holders.get(snapshot["SnapshotId"], 0) + 1
                )
        return released if newest or not due else [(snapshot, due)]

    def release(self, key):
        """The held snapshot of ``key`` lets go of it: [(snapshot, reason)] once no other key
        holds it, else []."""
        if key not in self.held:
            return []
        snapshot, reason = self.held.pop(key)
        sid = snapshot["SnapshotId"]
        self.holders[sid] -= 1
        if self.holders[sid]:
            return []
        del self.holders[sid]
        return [(snapshot, reason)]

    def watch(self, backed_up):
        """The volumes backed up, once known: returns the held snapshots of every other
        volume (gone, or no longer backed up), which may go now."""
        self.backed_up = backed_up
        gone = sorted(k for k in self.newest if k[0] == "volume" and k[1] not in backed_up)
        released = []
        for key in gone:
            del self.newest[key]
            released += self.release(key)
        return released

    def holds(self, snapshot_id):
        return snapshot_id in self.holders

    def is_newest(self, snapshot):
        """Whether it is the newest completed snapshot of its volume, a volume backed up (or,
        the volumes unknown, any volume)."""
        mark = (snapshot["StartTime"], snapshot["SnapshotId"])
        return self.newest.get(("volume", snapshot.get("VolumeId"))) == mark

    def kept(self):
        """[(key, snapshot, reason)]: each held snapshot once, named by the key it is held
        for: its volume once the volumes are known, else its copy key if it has one (while
        they are not, a copy is also held as the newest of its arbitrary VolumeId)."""
        keys, held = {}, {}
        for key, (snapshot, reason) in self.held.items():
            keys.setdefault(snapshot["SnapshotId"], []).append(key)
            held[snapshot["SnapshotId"]] = (snapshot, reason)
        prefer = "volume" if self.backed_up is not None else "copy"
        named = [
            (min(found, key=lambda k: (k[0] != prefer, str(k))), *held[sid])
            for sid, found in keys.items()
        ]
        return sorted(named, key=lambda k: str(k[0]))


def report_held(key, snapshot, reason, summary, now, max_age, lag):
    """A due snapshot kept as its volume's newest: said each run; a warning, counted in
    LastBackupsKept, once no newer one has come for longer than the coverage threshold."""
    sid, start = snapshot["SnapshotId"], snapshot["StartTime"]
    if key[0] == "volume":
        what, stale = f"the newest snapshot of {key[1]}", start <= now - max_age
    else:
        what, stale = f"the newest copy of {key[2]} from {key[1]}", start <= now - max_age - lag
    text = f"{what}, kept past its {reason}: none newer since {start:%Y-%m-%d %H:%M} UTC"
    if not stale:
        summary.skip(sid, f"{what}, kept past its {reason} until a newer one completes")
        return
    summary.warn(sid, text, volume_id=key[1] if key[0] == "volume" else key[2])
    summary.count("last_kept")
