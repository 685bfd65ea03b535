"""EBS snapshot copier: copy completed automated snapshots into the regions of their Copy_Dest.

Runs as an AWS Lambda function (handler ``ebs_snapshot_copier.lambda_handler``) in each
source region, every 15 minutes and as each snapshot completes, or from the command line
(``--help``). The tags it reads on primaries, the tags it writes on each copy (in the
CopySnapshot call itself), and what it does with a value it cannot read: docs/tags.md. How
it runs, logs and fails: docs/operations.md; vault copies: docs/immutable-backups.md.

What it does. Copies each completed primary (Type=Automated, a Copy_Dest, no
Source_SnapshotId) into each destination that holds no copy of it yet, oldest first, and
never a copy whose own DeleteOn has come. It carries KeepForever onto copies, locks the
copies of a Lock primary until their own DeleteOn, and with Vault_Account shares the
primary (or a staging copy of an aws/ebs one) with the vault account and copies it there
through that account's writer role, then unshares. AWS lets 20 copies into a region at once:
it starts at most the free slots, and a scheduled sweep with copies waiting stays up to
COPY_STAY_MINUTES past its time, starting each as a slot frees. Scheduled sweeps read only
primaries tagged Copy_State=pending (the 00:00 UTC sweep and runs by hand read them all), and
tag a primary Copy_State=done once nothing is left to do for it. Running twice copies
nothing twice; with under 60 s of Lambda time left it hands the rest to a new invocation.

Event
    {}  (by hand)                             every eligible primary of the region
    an EventBridge scheduled event            the pending primaries; the 00:00 UTC one:
                                              every eligible primary
    an "EBS Snapshot Notification" event      just that snapshot, as soon as it completes;
      (createSnapshot, succeeded)             its copy starts only while at most
                                              NOTIFIED_MAX_IN_FLIGHT copies are in flight
    {"dry_run": true}                         change nothing; report what would be copied

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure.

Environment
    AWS_REGION, else AWS_DEFAULT_REGION       the region
    LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL      the lowest level of the JSON log lines
    COPY_MAX_LAG_HOURS (24)                   a copy waiting longer is a warning
    COPY_STAY_MINUTES (12)                    how long a sweep stays for free slots; 0: none
    COPY_KMS_ACCOUNT_IDS                      other accounts whose keys Copy_KmsKeyId may name
    VAULT_ACCOUNT_IDS                         the accounts a Vault_Account tag may name
    VAULT_SHARE_KMS_KEY                       the key of staging copies of aws/ebs primaries
    VAULT_KMS_KEY                             the vault's key for vault copies
    VAULT_ROLE_NAME                           the writer role (ebs-snapshot-vault-writer)

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
