"""EBS snapshot creator: snapshot every EBS volume of each instance tagged Backup=Yes.

Runs as an AWS Lambda function (handler ``ebs_snapshot_creator.lambda_handler``), every
hour per region, or from the command line (``--help``). The tags it reads, the tags it
writes on each snapshot (in the CreateSnapshot call itself, never later), and what it does
with a value it cannot read: docs/tags.md. How it runs, logs and fails: docs/operations.md.

What it does. Lists the instances tagged Backup (every state but terminated and
shutting-down) and snapshots each attached EBS volume not opted out, with DeleteOn from its
retention tiers. Consistency=instance, fsfreeze or vss take every volume of an instance at
one instant (docs/consistency.md); a step that fails falls back to a crash-consistent set.
A Lock instance's snapshots are locked until their DeleteOn, and each run locks any whose
lock is missing. A Multi-Attach volume is snapshotted once. A run that sees the same event
again (EventId) skips the volumes it already did. Calls are paced at 90% of EC2's rate;
with under 60 s of Lambda time left it hands the rest to a new invocation of itself.

The schedule (BACKUP_DAILY_HOUR set). A scheduled run takes the instances whose
Backup_Every slot starts at its hour, or started up to two hours before (catch-up), and
skips each volume whose slot already has a snapshot (Backup_Slot); it creates only in the
first 55 minutes of its hour. An hour with nothing due costs one listing of the tagged
instances. It warns when the tags ask for more than EC2's snapshot rate or the region's
snapshot quota allow. docs/tags.md, "More than once a day".

Event
    {}                                        every enabled instance in the region
    an EventBridge scheduled event            the instances whose slot is due (without
                                              BACKUP_DAILY_HOUR: every enabled instance)
    {"instance_ids": ["i-...", ...]}          only these (still only if Backup enables them);
                                              an id that does not exist is a failure
    {"dry_run": true}                         change nothing; report what would be created
                                              and locked
    {"handoff": {"from": key, "done": [keys]}} written by a hand-off: what is done

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure. A run that starts with less than MIN_START_S
seconds fails at once, naming the timeout.

Environment
    AWS_REGION, else AWS_DEFAULT_REGION       the region
    LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL      the lowest level of the JSON log lines
    VAULT_ACCOUNT_IDS                         the accounts a Vault_Account tag may name
    COPY_KMS_ACCOUNT_IDS                      other accounts whose keys Copy_KmsKeyId may name
    BACKUP_DAILY_HOUR                         the daily snapshot's hour (UTC): hourly slots

IAM actions: ec2:DescribeInstances, ec2:DescribeVolumes, ec2:DescribeRegions,
ec2:DescribeSnapshots, ec2:CreateSnapshot, ec2:CreateSnapshots, ec2:CreateTags (only as
part of those), ec2:LockSnapshot (Type=Automated only), ec2:DescribeLockedSnapshots,
lambda:InvokeFunction (on itself, to hand over the rest of a long run);
for fsfreeze and vss: ssm:DescribeInstanceInformation, ssm:SendCommand (the two documents,
on instances tagged Consistency=fsfreeze or vss), ssm:GetCommandInvocation;
servicequotas:GetServiceQuota (the snapshot quota, once a day).
"""

JOB = "creator"
