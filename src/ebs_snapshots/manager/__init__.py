"""EBS snapshot manager: delete automated snapshots whose DeleteOn has come, and check
that every volume that should be backed up is.

Runs as an AWS Lambda function (handler ``ebs_snapshot_manager.lambda_handler``) once a
day in each region that has instances or receives copies, or from the command line.
Region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``. It deletes in its own region only:
copies are deleted by the manager running in the region that holds them.

Snapshot tags read
    Type=Automated   only snapshots of this account with this tag are ever considered
    DeleteOn         YYYY-MM-DD; deleted when it is today or earlier, so days when the
                     manager did not run are caught up. Any other value: kept, with a warning.
    KeepForever      keeps the snapshot forever unless its value is exactly No/false/0/off
                     (any case), as the IAM policy reads it. A key that is KeepForever but
                     for case or surrounding spaces (keepforever) keeps it too, with a
                     warning naming the key: a typo must never cost a backup.
    Lock             governance or compliance: the creator and the copier lock such a
                     snapshot until its DeleteOn. One still not locked LOCK_WITHIN (24 h)
                     after it was taken, its DeleteOn ahead, is a warning, counted in
                     LocksMissing.
    Archive=Yes      the creator's monthly/yearly primaries (instance tag Archive) and their
                     copies: moved to the archive tier, see below.
    Restore          on an archived snapshot, put there by a person: a number of days (a
                     temporary restore) or permanent; see below.
Written: KeepForever on a due copy whose primary is KeepForever (see below); the archive
tier's Archive_Note, Restore_Requested (and removed: Restore, Restore_Requested, and
Archive after a permanent restore); nothing else.
The manager never unlocks a snapshot: a due one whose lock is in force (someone extended
it) is left, with a warning naming the lock's expiry, not a failure; a delete refused
because a lock came after the listing is found by asking DescribeLockedSnapshots (AWS
documents no error code of its own for it).

The last backup is never deleted. A volume's newest completed snapshot stays past its
DeleteOn while the volume is attached to an instance whose Backup tag enables it, until a
newer one completes: should the creator stop (an IAM change, a broken deploy, an outage),
the manager does not delete the last backups. Once the newest is older than
COVERAGE_MAX_AGE_HOURS, this is a warning each run, naming the volume and since when no
newer one exists, counted in LastBackupsKept. A copy cannot see its source volume: the
newest copy of each source volume (its Source_VolumeId tag) is kept past its DeleteOn for
LAST_COPY_GRACE_DAYS (default 14) at most, the same way. A volume that is gone or no longer
backed up expires normally: nothing is kept forever by this rule. When the instances
cannot be read, every volume's newest snapshot is kept that run; so are the last backups
of an instance whose Backup tag cannot be read (the creator skips it with a warning). The
instances are read once the listing is over (an invocation that hands the rest over, see
below, never reads them): until then every volume's newest snapshot is held as if its
volume were backed up, and that of a volume that is not goes then.

A due copy is first checked against its primary, in its source region (one filtered
DescribeSnapshots per 200 copies and source region): if someone has just tagged the
primary KeepForever, the copy is tagged so and kept. A source region that cannot be read
(down, or a Source_Region that names no region) keeps its copies, with a warning, until
they are LAST_COPY_GRACE_DAYS past their DeleteOn; then they are deleted.

A snapshot that AWS will not delete because an AMI uses it (InvalidSnapshot.InUse) is kept
with a warning; one already gone (InvalidSnapshot.NotFound) counts as done; one the IAM
policy refuses because someone tagged it KeepForever after the listing is kept, not
failed. Any other error, or a network failure, fails that snapshot only; the rest are
still done. A destination whose copies cannot be listed fails alone: the rest of the
coverage check is still reported.

Coverage check (read-only, in the same run): every EBS volume that the creator must
snapshot (instance Backup=Yes, not terminated, volume not opted out with Backup=No) needs
a completed automated snapshot younger than COVERAGE_MAX_AGE_HOURS (environment; default
26); and in each region its snapshots ask copies for (Copy_Dest), once one of them has had
COPY_MAX_LAG_HOURS (default 24) to get there, a completed copy of one of its snapshots of
the last COVERAGE_MAX_AGE_HOURS + COPY_MAX_LAG_HOURS, whatever the retention; the same in
each vault region its snapshots ask vault copies for (Vault_Account, one of
VAULT_ACCOUNT_IDS; Vault_Region), among the copies tagged Source_Account=<this account>
(another source of a shared vault cannot stand in), read through the vault's writer role
(sts:AssumeRole, then its read-only DescribeSnapshots; a vault that cannot be read is a
failure, its copies not judged). A snapshot counts for the volume EC2 says it was taken of
(its VolumeId), here and as a volume's last backup, whatever its tags: a copy's VolumeId is
arbitrary, so copies and the copier's staging copies count for no volume (they expire on
their DeleteOn), and no tag written on a backup (Source_SnapshotId, Vault_StagingOf) stops it
counting as its volume's. A volume attached more recently than the threshold is not expected
yet. Each unprotected volume is named in the summary (``unprotected``, with the reasons)
and counted in the UnprotectedVolumes metric. Reading each destination's copies, it also
counts the copies of this region's snapshots more than two days past their DeleteOn there
(not KeepForever, not a source volume's newest): no manager deletes them in that region (a
warning, and the ExpiredCopiesLeft metric). Cost: a few paginated reads (DescribeRegions,
DescribeInstances, DescribeVolumes, one listing per destination region), whatever the
fleet size.

Restore drills (after the sweep and the coverage check; RESTORE_DRILL=off turns them off):
once a week, on a weekday chosen by a stable hash of the volume id, each protected volume's
newest completed snapshot, and each source volume's newest completed copy, is restored:
CreateVolume (gp3, in the zone of the volume's instance, else the region's first; tagged at
creation Type=RestoreDrill, Source_SnapshotId, DeleteAfter two hours on), all of the day's
side by side, watched together until available, in error or vanished (at most
DRILL_WAIT_S, never into the Lambda's last minute), then deleted whatever the result (one
still creating, which EC2 cannot delete, by a later run); never attached. The snapshot's
RestoreDrill tag says "<date> ok <seconds>s" or "<date> failed: <why>"; a failed drill is a
failure and a warning; throttling, capacity or the network is only a warning. At most
RESTORE_DRILL_PER_RUN (50) drills a run, the least recently drilled first; when a seventh
of the volumes is more, a warning says the weekly round cannot complete. Each run first
deletes drill volumes whose DeleteAfter has passed (left by a run that died), if they are
recognisably its own (made from the snapshot their Source_SnapshotId names, not attached,
gp3, created DRILL_LIFE before their DeleteAfter); any other volume tagged
Type=RestoreDrill is left, with a warning.

Archive tier (EBS user guide, "Archive Amazon EBS snapshots"): an archived snapshot is a
full copy at about a quarter of the standard price a GB-month, billed for 90 days at least,
and must be restored (up to 72 hours) before a volume can be made from it. A completed
Archive=Yes snapshot a day old (ARCHIVE_AFTER) goes to the archive tier (ModifySnapshotTier)
when at least 90 days remain to its DeleteOn, or it is KeepForever; a primary only once each
region of its Copy_Dest, and its vault, holds a completed copy (an archived snapshot can be
neither copied nor shared; a vault is read through its writer role); a copy the copier will
never make (its own DeleteOn has come, or its region is not enabled) is not waited for; never
a backed-up volume's newest snapshot (its quick restore: it waits for a newer one). With
fewer days left it stays standard: said once, and written on it as Archive_Note. An archive
under way (DescribeSnapshotTierStatus) is not asked for twice. Archived snapshots expire
on their DeleteOn like any other. A person's Restore tag (also on a due snapshot kept as its
volume's last backup, not on one deleted that run): RestoreSnapshotTier once, then
Restore becomes Restore_Requested=<date> (a permanent restore also removes Archive=Yes, or
it would be archived again); each run reports it while it restores (``restoring``) and,
once, that it is ready (``restored``, Restore_Requested removed) or failed (a failure). An
unreadable Restore warns and is left. The coverage check does not count an archived
snapshot, or an archived copy, as a recent backup; drills skip them. Cost: one
DescribeSnapshotTierStatus per 200 snapshots to archive or restoring, and one
DescribeSnapshots per 200 primaries to archive and Copy_Dest region.

Event
    {}  or an EventBridge scheduled event     every automated snapshot of the region
    {"dry_run": true}                         change nothing; report what would be deleted

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure. A run that cannot list the region's
snapshots fails, with its summary line. With under 60 s of Lambda time left it starts no
new delete and invokes itself asynchronously with the same event for the rest (ten thousand
deletes take about 37 minutes at EC2's rate); the coverage check and the drills are done by
the invocation that ends the sweep. Should that hand-off fail (or without a Lambda context)
it stops (summary: stopped_early, metric StoppedEarly) and its next run continues; running
twice is harmless. A run that starts with less than MIN_START_S seconds fails at once,
naming the function's timeout.

Pace: it reads one page (1000 snapshots) at a time and deletes while it reads, four calls
at a time, at most at 90% of EC2's rate for DeleteSnapshot (a burst of 90, then 4.5 a
second); memory grows with the volumes, not the snapshots.

Logs: one JSON line per item on stdout, and a last summary line that is also CloudWatch
Embedded Metric Format (namespace EBSSnapshots, dimensions job and region): SnapshotsDeleted,
UnprotectedVolumes, StoppedEarly, LastBackupsKept, ExpiredCopiesLeft, LocksMissing,
RestoreDrillsPassed, RestoreDrillsFailed, RestoreSeconds, SnapshotsArchived (in the archive
tier), SnapshotsRestoring, Warnings, Failures.
LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the level.

IAM actions: ec2:DescribeSnapshots (here and in the copies' source regions),
ec2:DeleteSnapshot (only on Type=Automated snapshots, never on KeepForever ones),
ec2:CreateTags (KeepForever only, on Type=Automated copies), ec2:DescribeInstances,
ec2:DescribeVolumes, ec2:DescribeRegions (the coverage check), ec2:DescribeLockedSnapshots;
for drills: ec2:CreateVolume (tagged Type=RestoreDrill, from Type=Automated snapshots),
ec2:CreateTags (in that call, and RestoreDrill on Type=Automated snapshots),
ec2:DeleteVolume (Type=RestoreDrill only), ec2:DescribeAvailabilityZones;
for the archive tier: ec2:ModifySnapshotTier and ec2:RestoreSnapshotTier (Type=Automated
only), ec2:DescribeSnapshotTierStatus, ec2:CreateTags (Archive_Note, Restore_Requested) and
ec2:DeleteTags (Restore, Restore_Requested, Archive) on Type=Automated snapshots;
lambda:InvokeFunction (on itself, to hand over the rest of a long sweep); sts:AssumeRole
and sts:TagSession (the vault writer role, its session tagged Source_Account, for the
coverage check's read).
"""

JOB = "manager"
