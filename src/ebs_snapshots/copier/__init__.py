"""EBS snapshot copier: copy completed automated snapshots into the regions of their Copy_Dest.

Runs as an AWS Lambda function (handler ``ebs_snapshot_copier.lambda_handler``) in each
source region, a few hours after the creator, or from the command line. Region:
``AWS_REGION``, else ``AWS_DEFAULT_REGION``. It reads its own region and each destination;
it writes only into destinations, and only copies.

Snapshot tags read (on primaries, written by the creator)
    Type=Automated, Copy_Dest   only such snapshots, when completed, are copied; a snapshot
                                with Source_SnapshotId is a copy and is never copied again.
    DeleteOn                    a primary that is not YYYY-MM-DD warns and is not copied.
    Copy_Retention              days to keep copies, from the primary's creation date;
                                without it (or unreadable: a warning), the primary's
                                DeleteOn. No copy is made whose own DeleteOn has come.
    Copy_KmsKeyId               copies are made with Encrypted=True and this key (id, alias
                                or ARN); without it (or malformed: a warning), encrypted
                                primaries get the destination's default EBS key.
    KeepForever                 carried onto the copies, new and existing (a near-miss
                                key such as keepforever arrives as KeepForever).
    Lock, Lock_CoolOffHours     each copy is locked in the same mode (compliance: with the
                                same cooling-off) until the copy's own DeleteOn, 00:00 UTC,
                                right after its CopySnapshot; an unreadable Lock warns.
    Copy_State                  pending (the creator writes it at creation) until nothing is
                                left to do for the primary, then done (written by the copier;
                                see Sweeps).
Snapshot tags written on each copy, in the CopySnapshot call itself:
    Type=Automated, DeleteOn (see above), Name, KeepForever, Archive (the manager of the
    destination archives the copy by its own DeleteOn), Lock and Lock_CoolOffHours (as
    they drive the copy's lock) and, when the copy keeps the
    primary's date, Retention_Tier (as on the primary), Source_SnapshotId=<primary id>,
    Source_Region=<this region>, Source_VolumeId=<the primary's volume>: the manager of the
    destination keeps each source volume's newest copy by it. The copy keeps the primary's
    description.

Vault copies (primaries tagged Vault_Account, Vault_Region, Vault_Retention by the creator;
an account not in VAULT_ACCOUNT_IDS, the template's VaultAccountIds, is a warning and no copy):
each completed primary is shared with the vault account (ModifySnapshotAttribute,
createVolumePermission, that account only) and copied in each vault region by that account,
through its role VAULT_ROLE_NAME (default ebs-snapshot-vault-writer; sts:AssumeRole), with
Encrypted=True and VAULT_KMS_KEY (default the vault's default EBS key), tagged in the call
Type=Automated, DeleteOn (Vault_Retention days from the primary's creation, else its
DeleteOn), Source_SnapshotId, Source_Region, Source_Account, Source_VolumeId, and Lock and
Lock_CoolOffHours for a Lock primary (locked there at once). A primary encrypted with the
AWS managed key cannot be shared: it is first copied here with VAULT_SHARE_KMS_KEY (tagged
Type=Automated, Vault_StagingOf=<primary>, DeleteOn at most STAGING_DAYS on), and that
staging copy is shared once completed (a later sweep); without the key, a named failure.
A sweep unshares what is shared with a vault (DescribeSnapshots RestorableByUserIds) once
every vault region of its primary holds a completed copy, and deletes the staging copy. A
staging copy is known by more than its tag: the description its CopySnapshot call gave it
(no EC2 call changes one), encryption, and against its primary a VolumeId that is not the
primary's volume (a copy's is arbitrary), the same size, a later start; any other snapshot
tagged Vault_StagingOf is named in a warning and left as what it otherwise is.
As for regions: no second copy in a vault region, at most the free of its 20 slots, a copy
in error a failure each sweep; a vault that cannot be read fails alone.

A key a destination refuses fails that copy only. AWS may also accept a copy and fail it
later (an unusable key): a copy in state "error" is named as a failure on every sweep and
no other copy is made while it exists. A destination that cannot be read (refused,
unreachable, down) fails alone: copies into every other destination go on. Any error on
one copy, network failures and bugs of ours included, fails that copy only.

A lock that fails never costs the copy: a warning. Each sweep (not a notified snapshot's
run) also locks, in each destination, the copies of this region's primaries tagged Lock
whose lock is not in force (DescribeLockedSnapshots). Nothing is ever unlocked.

A destination that already holds a copy of a primary (any state, pending included) gets no
second one, so running twice copies nothing twice. AWS lets 20 copies run into a region at
once: the copier counts this account's copies still pending there (any source region) and
starts at most the free slots, oldest primary first. A scheduled sweep (an EventBridge
"Scheduled Event") with copies left waiting then stays until COPY_STAY_MINUTES (default
12; 0: no stay) after the time it was scheduled for: every 15 s it counts each waiting
destination's copies in flight and starts the next waiting copies, oldest first, as slots
free (after checking that no other run copied them meanwhile). A late or retried delivery
stays less, so that with sweeps every 15 minutes one ends before the next begins. What
still waits is reported as deferred, and the next sweep continues. Should AWS still refuse
one (ResourceLimitExceeded: someone else's copies), the copier stops copying into that
region until its next look; that is not a failure either. But a primary that still waits for a slot
more than COPY_MAX_LAG_HOURS (default 24) after it was taken means that destination never
catches up: a warning, and its volumes count in UnprotectedVolumes. Copies go four at a
time, at most at 90% of EC2's rate for CopySnapshot.

Sweeps: what a run reads. A scheduled sweep reads only the primaries tagged
Copy_State=pending (and in each destination and vault their copies, 200 ids a lookup, and
the copies in flight), so that its cost follows the copies still to make, not the snapshots
kept: with nothing pending it is one DescribeSnapshots. Once every destination and vault of
a pending primary holds a completed copy (locked if tagged Lock, KeepForever carried), its
share with the vault taken back and its staging copy deleted, the sweep tags it
Copy_State=done (CreateTags, 200 at a time; a refusal is a warning, and the next sweep tries
again). Anything left to do, or a place that could not be read, keeps it pending. The
sweep scheduled for 00:00-00:14 UTC, and any run not scheduled (by hand, the command line),
reads every primary instead, as before Copy_State: it copies and tags pending the primaries
without Copy_State (from before this version) or done ones that need something again (a
copy deleted, a region added, KeepForever set later), and takes back shares whose primary
no longer asks for a vault. Such changes wait for it, at most a day.

Event
    {}  (by hand)                             every eligible primary of the region
    an EventBridge scheduled event            the pending primaries; the 00:00 UTC one:
                                              every eligible primary
    an "EBS Snapshot Notification" event      just that snapshot, as soon as it completes
      (createSnapshot, succeeded)             (one DescribeSnapshots by id, and in each
                                              destination a lookup of its copies only);
                                              its copy starts only while at most 10 copies
                                              are in flight there (NOTIFIED_MAX_IN_FLIGHT):
                                              beyond, older ones may wait, and the sweeps
                                              start them first; without a snapshot id: a
                                              warning, no call
    {"dry_run": true}                         change nothing; report what would be copied

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure.

Running it again, or on the same event again, copies nothing twice. A CopySnapshot whose
answer was lost after it may have reached EC2 is not sent again by botocore: the copy is
looked for by its Source_SnapshotId first. With under 60 s of Lambda time left it starts
no new copy and invokes itself asynchronously with the same event for the rest, naming in
it the copies started ("copies_started": {region: [primary ids]}), which the next one counts
as there though its listing may not show them yet. A run that cannot list its own region's
snapshots fails, with its summary line; one that starts with less than MIN_START_S seconds
fails at once.

Logs: one JSON line per item on stdout, and a last summary line that is also CloudWatch
Embedded Metric Format (namespace EBSSnapshots, dimensions job and region):
SnapshotsCopied, CopiesDeferred, Warnings, Failures, and UnprotectedVolumes when copies lag.
LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the level.

IAM actions: ec2:DescribeSnapshots, ec2:DescribeRegions, ec2:CopySnapshot, ec2:CreateTags
(with the copy, KeepForever on existing copies, Copy_State on primaries), ec2:LockSnapshot
(Type=Automated only), ec2:DescribeLockedSnapshots, KMS use through EC2 for encrypted
copies, lambda:InvokeFunction (on itself, to hand over the rest of a long run); for vaults:
ec2:ModifySnapshotAttribute (Type=Automated, never a group), ec2:DeleteSnapshot (its
staging copies), kms:DescribeKey, sts:AssumeRole and sts:TagSession (the writer role, its
session tagged Source_Account with this account), and in the vault, through that role:
ec2:DescribeSnapshots, ec2:CopySnapshot, ec2:CreateTags (in the copy),
ec2:LockSnapshot, ec2:DescribeLockedSnapshots (a sweep locks vault copies whose lock failed).
"""

JOB = "copier"
