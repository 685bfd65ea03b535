"""EBS snapshot creator: snapshot every EBS volume of each instance tagged Backup=Yes.

Runs as an AWS Lambda function (handler ``ebs_snapshot_creator.lambda_handler``), once a
day per region, or from the command line. Region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``.

Instance tags read
    Backup      Yes/true/1/on (any case) enables backups; No/false/0/off disables; any other
                value is reported as a warning and the instance is skipped.
    Retention   days to keep its snapshots: a whole number, 1 or more (default 7). Anything
                else warns and uses 7; more than 36500 warns and uses 36500.
    Retention_Weekly, Retention_Monthly, Retention_Yearly
                weeks / months / years to keep the snapshot taken on the weekly day, the
                1st of the month, 1 January. Each snapshot gets the latest DeleteOn among
                the tiers that apply to its day (months are calendar months). Unreadable:
                a warning, and no such tier.
    Weekly_Day  Mon ... Sun (or Monday ..., any case): the weekly day (default Sun).
    Copy_Retention, Copy_KmsKeyId
                passed on to the snapshot (when it has a Copy_Dest) for the copier: days
                to keep copies, and the KMS key to encrypt them with. Unreadable: a
                warning, and left out (copies keep the primary's date, the default key).
    Copy_Dest   regions that receive a copy, separated by commas or spaces. Entries that are
                not enabled regions of this account, or that name this region, warn and are
                dropped.
    Vault_Account, Vault_Region, Vault_Retention
                a 12-digit account id that receives a vault copy of each snapshot (the
                copier makes it, through a role there that cannot delete it); the regions
                of that account to copy into (as in Copy_Dest, this region allowed; default
                this region); days to keep vault copies, from the snapshot's creation
                (default its DeleteOn). Unreadable, or an account not in VAULT_ACCOUNT_IDS
                (template parameter VaultAccountIds): a warning, and no vault copy
                (account), the entry dropped (region), or left out (retention).
    Name        used in the snapshot description and copied to the snapshot's Name tag.
    Consistency how the instance's volumes are captured (any case; anything else warns and
                uses volume):
                volume    one crash-consistent CreateSnapshot per volume (the default)
                instance  one CreateSnapshots: every volume at the same instant, opted-out
                          volumes excluded (ExcludeBootVolume, ExcludeDataVolumeIds)
                fsfreeze  Linux, through SSM (the stack's document ebs-snapshot-fsfreeze,
                          template.yaml's CreatorFreezeDocument): flush and freeze the
                          mounted filesystems of the data volumes, take the set, thaw at
                          once. The freeze script starts its own thaw, 60 s later, before it
                          freezes anything. The root filesystem is never frozen.
                vss       Windows: AWS's AWSEC2-CreateVssSnapshot document snapshots from
                          the instance (with the instance's own role), tagged with this
                          contract. It cannot leave out a data volume (a warning says so).
                When the SSM step cannot be done (no agent online, wrong platform, command
                refused, failed, or not done within 30 s for fsfreeze, 300 s for vss; SSM
                unreachable), the crash-consistent set is taken anyway, tagged
                Consistency=crash-fallback, with a warning. Instances are handled four at a
                time, so one slow command holds up no other.
    Lock        governance or compliance (any case): each snapshot is locked (EBS Snapshot
                Lock) until its DeleteOn, 00:00 UTC, right after its CreateSnapshot (a
                pending snapshot can be locked). Absent or a no-word: no lock; anything
                else warns and means no lock.
    Lock_CoolOffHours
                compliance only: hours in which a person can still undo the lock, 1-72
                (default 24; unreadable warns and uses 24, above 72 uses 72).
    Archive     monthly, yearly or monthly,yearly (any case): the snapshots whose DeleteOn
                that tier chose (Retention_Tier) are tagged Archive=Yes, and the manager
                moves them to the cheaper archive tier. Absent or a no-word: none; anything
                else warns and means none; a tier without its Retention_ tag warns.
Volume tag read
    Backup      No/false/0/off leaves this one volume out of an enabled instance.

Snapshot tags written, in the CreateSnapshot call itself (TagSpecifications), never later:
    Type=Automated, DeleteOn=<YYYY-MM-DD, today (UTC) + the longest tier that applies>,
    Retention_Tier=<daily|weekly|monthly|yearly>, Consistency=<volume|instance|fsfreeze|
    vss|crash-fallback>, Copy_Dest=<clean list> with Copy_Retention and Copy_KmsKeyId (only
    when there is one), Vault_Account with Vault_Region=<clean list> and Vault_Retention
    (when valid), Copy_State=pending when there is either (the copier marks it done once
    every copy is made), Name=<instance Name> (only when there is one), Lock=<mode> and
    Lock_CoolOffHours (compliance) for a Lock instance, Archive=Yes (see Archive), and
    EventId=<the event's "id", else the Lambda request id>: a run that sees the same event
    again (Lambda's retry of a failed run keeps the request id; EventBridge may deliver an
    event twice) skips the volumes that already have a snapshot for it.
Snapshot description: "<Name> (<instance-id>) - <volume-id> (<device>) - <region>".

Locks: a lock that fails (throttled, refused, a state AWS cannot lock, the network) never
costs the snapshot: a warning. At the end of each run (not a hand-off's first part), the
region's primaries tagged Lock whose lock is not in force (DescribeLockedSnapshots) are
locked (a lock that ends before DeleteOn is extended): those of earlier runs, of this one,
and a VSS set's. Nothing is ever unlocked. To undo a wrong Lock, remove the tag from the
instance and the snapshots first: a snapshot that keeps it is locked again.

Instances in every state except terminated and shutting-down are snapshotted (a stopped
instance's volumes hold data too). Instance-store volumes have no EBS snapshot and are
ignored. A Multi-Attach volume that several enabled instances ask for is snapshotted once,
alone (Consistency=volume, left out of their sets, with a warning; a VSS set, which cannot
leave it out, takes it instead): the instance with the longest retention names it and
gives its tags, and it is copied wherever any of them asks, with the copy settings of the
first of them that asks for copies (and to the vault of the first that asks for one); the
summary names every instance.

Event
    {}  or an EventBridge scheduled event     every enabled instance in the region
    {"instance_ids": ["i-...", ...]}          only these (still only if Backup enables them);
                                              an id that does not exist is a failure
    {"dry_run": true}                         change nothing; report what would be created
                                              and locked
    {"handoff": {"from": key, "done": [keys]}} written by a hand-off: what is done

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure, so the invocation counts as failed. Any
error on one volume or set (AWS's, a network failure, a bug of ours) fails that item only;
a run that cannot list the region's instances fails with its summary line; an event that
is not a JSON object, or a bad dry_run or instance_ids, is refused before anything is done.
A run that starts with less than MIN_START_S seconds fails at once, naming the timeout.

Pace: CreateSnapshot calls go at most at 90% of EC2's rate for them (a burst of 90, then
4.5 a second), four at a time, so a large run neither meets throttling nor starves the
account's other callers. Bad days: throttling is retried by botocore (standard mode, 10
attempts in all); a volume refused with SnapshotCreationPerVolumeRateExceeded is tried
again at least 15 s later while the others go on. A CreateSnapshot(s) whose answer was
lost after it may have reached EC2 (a read timeout, a dropped connection, a 5xx) is not
sent again by botocore: the snapshot it may have made is looked for by its EventId first.
Every instance is listed and planned before the first snapshot starts, and the work goes
in the order of instance and volume ids. With under 60 s of Lambda time left, no new
snapshot is started: the function invokes itself asynchronously with the same event id,
telling it in the event ("handoff": the key to go on from, and the keys done after it)
what is done, and that invocation does the rest (a listing by EventId may lag what was
just made). No call or retry is started that could outlive the Lambda.

Logs: one JSON line per item on stdout, and a last summary line that is also CloudWatch
Embedded Metric Format (namespace EBSSnapshots, dimensions job and region): SnapshotsCreated,
Warnings, Failures. LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the level.

IAM actions: ec2:DescribeInstances, ec2:DescribeVolumes, ec2:DescribeRegions,
ec2:DescribeSnapshots, ec2:CreateSnapshot, ec2:CreateSnapshots, ec2:CreateTags (only as
part of those), ec2:LockSnapshot (Type=Automated only), ec2:DescribeLockedSnapshots,
lambda:InvokeFunction (on itself, to hand over the rest of a long run);
for fsfreeze and vss: ssm:DescribeInstanceInformation, ssm:SendCommand (the two documents,
on instances tagged Consistency=fsfreeze or vss), ssm:GetCommandInvocation.
"""

JOB = "creator"
