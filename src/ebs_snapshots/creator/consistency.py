"""Consistent snapshots: fsfreeze on Linux and VSS on Windows, through SSM."""

import re
import threading
import time

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import describe_error, error_code
from ebs_snapshots.common.budget import STOP_MARGIN_S, OutOfTime
from ebs_snapshots.common.tags import TAG_COPY_DEST
from ebs_snapshots.creator.plan import FALLBACK, volume_specs
from ebs_snapshots.creator.snapshots import create_set, create_snapshot, set_record, written_tags

SSM_PLATFORM = {"fsfreeze": "Linux", "vss": "Windows"}
# fsfreeze: the stack's own document (template.yaml's CreatorFreezeDocument), the only command the
# role may run; vss: AWS's document, which snapshots from the instance with our tags.
FREEZE_DOCUMENT, VSS_DOCUMENT = "ebs-snapshot-fsfreeze", "AWSEC2-CreateVssSnapshot"
THAW_AFTER_S = 60  # the freeze script thaws by itself this long after freezing, whatever happens
FREEZE_WAIT_S = 30  # the longest wait for the freeze: the set is taken well before the thaw
VSS_WAIT_S = 300  # AWS's document may first install its VSS components
POLL_S = 2
DONE_STATES = ("Success", "Failed", "TimedOut", "Cancelled", "Cancelling")  # SSM's last states


def vss_tags(tags, consistency):
    """Tags as AWS's VSS document takes them: Key=K,Value=V;... (no , or ; inside)."""
    clean = written_tags(tags, consistency)
    if TAG_COPY_DEST in clean:  # the copier reads regions separated by spaces too
        clean[TAG_COPY_DEST] = clean[TAG_COPY_DEST].replace(",", " ")
    return ";".join(f"Key={k},Value={re.sub(r'[,;]', ' ', v)}" for k, v in clean.items())


def ssm_refusal(ssm, iid, mode):
    """Why SSM cannot run the consistency step on this instance, or None."""
    found = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [iid]}])[
        "InstanceInformationList"
    ]
    if not found:
        return "no SSM agent has registered from it"
    info = found[0]
    if info.get("PingStatus") != "Online":
        return f"its SSM agent is {info.get('PingStatus', 'not online')}"
    if info.get("PlatformType") != SSM_PLATFORM[mode]:
        return f"{mode} needs {SSM_PLATFORM[mode]}; it runs {info.get('PlatformType')}"
    return None


def run_command(ssm, iid, document, parameters, wait, budget):
    """Send one SSM command and wait, at most ``wait`` seconds, for its end. Returns None
    when it succeeded, else why not."""
    version = {"DocumentVersion": "$LATEST"} if document == FREEZE_DOCUMENT else {}
    command = ssm.send_command(
        InstanceIds=[iid],
        DocumentName=document,
        **version,
        Parameters=parameters,
        TimeoutSeconds=max(30, wait),
        Comment=f"ebs-snapshot-creator: {document}",
    )["Command"]["CommandId"]
    for _ in range(max(1, wait // POLL_S)):
        if budget.left() - POLL_S < STOP_MARGIN_S:
            break
        time.sleep(POLL_S)
        try:
            result = ssm.get_command_invocation(CommandId=command, InstanceId=iid)
        except ClientError as exc:
            if error_code(exc) == "InvocationDoesNotExist":  # not delivered yet
                continue
            raise
        if result["Status"] == "Success":
            return None
        if result["Status"] in DONE_STATES:
            output = result.get("StandardOutputContent", "").strip() or "no output"
            return f"{document} ended {result['Status']}: {output}"[:300]
    return f"{document} did not finish within {wait} s"


def take(ec2, ssm, item, summary, budget):
    """Snapshot one volume, or one instance's set in its Consistency mode; ``ssm()`` gives
    the SSM client, built only for the first fsfreeze or vss set."""
    if "set" not in item:
        create_snapshot(ec2, item, summary, budget)
    elif item["set"] == "instance":
        create_set(ec2, item, "instance", summary, budget)
    else:
        consistent_set(ec2, ssm(), item, summary, budget)


def built_once(build):
    """build() on the first call, from whichever worker asks first; that client after.
    boto3 builds clients from one shared session, which is not safe from two threads."""
    lock, built = threading.Lock(), []

    def client():
        with lock:
            if not built:
                built.append(build())
        return built[0]

    return client


def ssm_step(call, *args):
    """call(*args): why the SSM step could not be done, or None. An error from SSM, or a
    network failure on the way there, is such a reason: it never costs a backup."""
    try:
        return call(*args)
    except OutOfTime:
        raise
    except Exception as exc:
        return f"SSM failed: {describe_error(exc)}"


def consistent_set(ec2, ssm, item, summary, budget):
    """fsfreeze or vss through SSM; when that step cannot be done, the crash-consistent set
    (Consistency=crash-fallback) and a warning: a consistency step never costs a backup."""
    iid, mode = item["instance_id"], item["set"]
    reason = ssm_step(ssm_refusal, ssm, iid, mode)
    if reason is None and not summary.dry_run:
        step = vss_set if mode == "vss" else frozen_set
        reason = step(ec2, ssm, item, summary, budget)
        if reason is None:
            return
    if reason is None:  # a dry run that SSM could serve (SSM has no DryRun to ask more)
        create_set(ec2, item, mode, summary, budget)
        return
    summary.warn(iid, f"{mode} not done ({reason}); took a crash-consistent set instead")
    create_set(ec2, item, FALLBACK, summary, budget)


def frozen_set(ec2, ssm, item, summary, budget):
    """Freeze, take the set, thaw at once. Returns None when done, else why it could not
    freeze (nothing was snapshotted then)."""
    iid = item["instance_id"]
    if not item["data"]:
        return "no data volume to freeze: the root filesystem is never frozen"
    freeze = {
        "Action": ["freeze"],
        "Volumes": [volume_specs(item["data"])],
        "ThawAfterSeconds": [str(THAW_AFTER_S)],
    }
    sent = time.monotonic()  # the script's own thaw comes THAW_AFTER_S after this, or later
    try:
        reason = ssm_step(run_command, ssm, iid, FREEZE_DOCUMENT, freeze, FREEZE_WAIT_S, budget)
        if reason is None:
            create_set(ec2, item, "fsfreeze", summary, budget)
            if time.monotonic() - sent > THAW_AFTER_S:
                late = "the set may have been taken after the filesystems thawed by themselves"
                summary.warn(iid, f"fsfreeze took over {THAW_AFTER_S} s: {late}")
    finally:
        thaw(ssm, iid, item["data"], summary)
    return reason


def thaw(ssm, iid, data, summary):
    """Thaw now, without waiting: the freeze script's own timer is the safety net."""
    try:
        ssm.send_command(
            InstanceIds=[iid],
            DocumentName=FREEZE_DOCUMENT,
            DocumentVersion="$LATEST",
            Parameters={"Action": ["thaw"], "Volumes": [volume_specs(data)]},
            Comment="ebs-snapshot-creator: thaw",
        )
    except Exception as exc:  # out of time too: the script's own timer thaws
        summary.warn(
            iid, f"thaw not sent ({describe_error(exc)}); it thaws by itself in {THAW_AFTER_S} s"
        )


def vss_set(_ec2, ssm, item, summary, budget):
    """AWS's VSS document snapshots the instance's volumes from the instance itself (with
    the instance's own role), tagged with our contract. Returns None when done."""
    iid = item["instance_id"]
    for vid in item["exclude_data"]:
        summary.warn(vid, f"vss cannot leave out data volume {vid} of {iid}; it is included")
    parameters = {
        "ExcludeBootVolume": ["True" if item["exclude_boot"] else "False"],
        "description": [item["description"]],
        "tags": [vss_tags(item["tags"], "vss")],
    }
    reason = ssm_step(run_command, ssm, iid, VSS_DOCUMENT, parameters, VSS_WAIT_S, budget)
    if reason is None:  # made on the instance: their ids are not known here
        for plan in item["plans"]:
            summary.did("create", volume_id=plan["volume_id"], **set_record(item, "vss"))
    return reason
