"""EBS snapshot manager: delete automated snapshots whose DeleteOn has come, and check
that every volume that should be backed up is.

Runs as an AWS Lambda function (handler ``ebs_snapshot_manager.lambda_handler``) once a
day in each region that has instances or receives copies, or from the command line
(``--help``). It deletes in its own region only: copies are deleted by the manager running
in the region that holds them. The tags it reads and writes, and what it does with a value
it cannot read: docs/tags.md. How it runs, logs, alarms and fails: docs/operations.md.

What it does, in one run. Deletes this account's Type=Automated snapshots whose DeleteOn is
today or earlier, unless KeepForever (or a key that is KeepForever but for case or spaces)
keeps them. It never deletes a volume's last backup: a backed-up volume's newest completed
snapshot stays past its DeleteOn until a newer one completes, and the newest copy of each
source volume up to LAST_COPY_GRACE_DAYS past its own. It never unlocks: a due snapshot
still locked is left, with a warning. Before deleting a due copy it looks its primary up in
the source region, and keeps the copy if the primary is KeepForever. Then it checks
coverage (every volume that should be backed up has a recent completed snapshot, and a
recent copy in each Copy_Dest and vault region), runs the day's restore drills (a gp3 volume
from each protected volume's newest snapshot, once a week, deleted at once), and moves
Archive=Yes snapshots to the archive tier or restores those a person tagged Restore
(docs/cost-and-archive.md). Deletes are paced at 90% of EC2's rate, one page of 1000 at a
time; with under 60 s of Lambda time left it hands the rest to a new invocation, and the
invocation that ends the sweep does the coverage check and the drills.

Event
    {}  or an EventBridge scheduled event     every automated snapshot of the region
    {"dry_run": true}                         change nothing; report what would be deleted

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure. A run that starts with less than MIN_START_S
seconds fails at once, naming the function's timeout.

Environment
    AWS_REGION, else AWS_DEFAULT_REGION       the region
    LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL      the lowest level of the JSON log lines
    COVERAGE_MAX_AGE_HOURS (26)               a volume's newest snapshot older: unprotected
    COPY_MAX_LAG_HOURS (24)                   how long a copy may lag its snapshot
    LAST_COPY_GRACE_DAYS (14)                 the newest copy of a source volume kept past
                                              its DeleteOn this long at most
    RESTORE_DRILL (on), RESTORE_DRILL_PER_RUN (50)
                                              restore drills, and the most one run starts
    VAULT_ACCOUNT_IDS, VAULT_ROLE_NAME        the vaults whose copies coverage reads

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
