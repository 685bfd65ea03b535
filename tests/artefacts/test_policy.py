"""The IAM policy, read statically (moto does not evaluate IAM conditions)."""

import ast
import json
import re
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager
from testkit import iam_eval

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "iam-policy.json").read_text()
POLICY = json.loads(TEXT)
JOBS = [ROOT / f"ebs_snapshot_{job}.py" for job in ("creator", "copier", "manager")]
# IAM names the permission for a few API operations differently from the operation.
IAM_NAME = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "service-quotas:GetServiceQuota": "servicequotas:GetServiceQuota",
}
RESTORE_PART = "# ---- src/ebs_snapshots/manager/restore_"


def actions(stmt):
    return [stmt["Action"]] if isinstance(stmt["Action"], str) else stmt["Action"]


def statements(action):
    return [s for s in POLICY["Statement"] if action in actions(s)]


def granted(prefixes):
    return {
        a
        for s in POLICY["Statement"]
        if s["Effect"] == "Allow"
        for a in actions(s)
        if a.split(":")[0] in prefixes
    }


def lambda_part(text):
    """A job file without the manager's restore modules: the person who restores runs
    those, under iam-policy-restore.json (tests/artefacts/test_restore_policy.py)."""
    parts = re.split(r"(?m)^(?=# ---- src/)", text)
    return "".join(p for p in parts if not p.startswith(RESTORE_PART))


def api_calls_in_code():
    """IAM actions for every boto3 call the job files can make: method calls and method
    references (the dry-run probe) on clients, and operation names given to paginate."""
    session = botocore.session.get_session()
    operations = {}
    for service in ("ec2", "lambda", "ssm", "service-quotas"):
        for name in session.get_service_model(service).operation_names:
            operations[xform_name(name)] = f"{service}:{name}"
    used = set()
    for path in JOBS:
        tree = ast.parse(lambda_part(path.read_text()))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in operations:
                used.add(operations[node.attr])
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "paginate":
                used.add(operations[node.args[1].value])
            if isinstance(node, ast.Constant) and node.value == "TagSpecifications":
                used.add("ec2:CreateTags")  # tagging in the create call needs CreateTags too
    return {IAM_NAME.get(a, a) for a in used}


def test_policy_is_valid_json_with_a_unique_sid_on_each_statement():
    assert POLICY["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in POLICY["Statement"]]
    assert len(sids) == len(set(sids))


def test_the_deploy_page_says_why_of_each_statement():
    text = (ROOT / "docs" / "deploy.md").read_text()
    table = text[text.index("## The permissions") :]
    table = table[: table.index("| in `iam-policy.json` |")]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert {s["Sid"] for s in POLICY["Statement"]} == rows


def test_parliament_finds_nothing_above_low():
    above_low = iam_eval.findings_above_low(TEXT)
    assert above_low == []


def test_the_policy_grants_exactly_the_ec2_lambda_ssm_and_quota_actions_the_code_calls():
    used = api_calls_in_code()
    assert "ec2:DeleteSnapshot" in used and "ssm:SendCommand" in used  # the scan works
    assert granted({"ec2", "lambda", "ssm", "servicequotas"}) == used


def test_kms_and_logs_are_exactly_what_encrypted_copies_and_lambda_logging_need():
    assert granted({"kms"}) == {
        "kms:DescribeKey",
        "kms:Decrypt",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:CreateGrant",
    }
    for stmt in statements("kms:Decrypt") + statements("kms:ReEncryptTo"):
        if stmt["Effect"] == "Allow":
            assert stmt["Condition"]["StringLike"] == {"kms:ViaService": "ec2.*.amazonaws.com"}
    assert granted({"logs"}) == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    (logs,) = statements("logs:PutLogEvents")
    assert all(":log-group:/aws/lambda/ebs-snapshot-" in r for r in logs["Resource"])


def test_delete_is_only_allowed_on_snapshots_tagged_automated():
    (stmt,) = [s for s in statements("ec2:DeleteSnapshot") if s["Effect"] == "Allow"]
    assert stmt["Resource"] == "arn:aws:ec2:*::snapshot/*"
    assert stmt["Condition"] == {"StringEquals": {"ec2:ResourceTag/Type": "Automated"}}


def test_snapshots_cannot_be_created_or_copied_without_type_automated():
    (deny,) = [s for s in statements("ec2:CreateSnapshot") if s["Effect"] == "Deny"]
    assert set(actions(deny)) == {"ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CopySnapshot"}
    assert deny["Resource"] == "arn:aws:ec2:*::snapshot/*"
    # A negated operator is true when the key is missing: an untagged request is denied too.
    assert deny["Condition"] == {"StringNotEquals": {"aws:RequestTag/Type": "Automated"}}


def test_create_tags_only_while_creating_or_only_keep_forever_on_automated():
    by_sid = {s["Sid"]: s for s in statements("ec2:CreateTags")}
    assert set(by_sid) == {
        "TagOnlyWhileCreating",
        "CarryKeepForeverOntoCopies",
        "NeverReleaseKeepForever",
        "TagDrillVolumesWhileCreating",
        "RecordRestoreDrills",
        "RecordArchiveAndRestore",
        "RecordCopyState",
        "CopyStateIsPendingOrDone",
    }
    tiers = by_sid["RecordArchiveAndRestore"]["Condition"]
    assert tiers["ForAllValues:StringEquals"] == {
        "aws:TagKeys": ["Archive_Note", "Restore_Requested"]
    }
    drill_volumes = by_sid.pop("TagDrillVolumesWhileCreating")
    assert drill_volumes["Resource"] == "arn:aws:ec2:*:*:volume/*"
    assert drill_volumes["Condition"] == {"StringEquals": {"ec2:CreateAction": "CreateVolume"}}
    drills = by_sid["RecordRestoreDrills"]["Condition"]
    assert drills["ForAllValues:StringEquals"] == {"aws:TagKeys": ["RestoreDrill"]}
    assert by_sid["TagOnlyWhileCreating"]["Condition"] == {
        "StringEquals": {"ec2:CreateAction": ["CreateSnapshot", "CreateSnapshots", "CopySnapshot"]}
    }
    keep = by_sid["CarryKeepForeverOntoCopies"]["Condition"]
    assert keep["StringEquals"] == {"ec2:ResourceTag/Type": "Automated"}
    assert keep["ForAllValues:StringEquals"] == {"aws:TagKeys": ["KeepForever"]}
    assert all(s["Resource"] == "arn:aws:ec2:*::snapshot/*" for s in by_sid.values())
    assert by_sid["NeverReleaseKeepForever"]["Effect"] == "Deny"


def test_the_only_lambda_permission_is_invoking_the_three_jobs_to_hand_off():
    (stmt,) = statements("lambda:InvokeFunction")
    assert sorted(stmt["Resource"]) == [
        "arn:aws:lambda:*:*:function:ebs-snapshot-copier",
        "arn:aws:lambda:*:*:function:ebs-snapshot-creator",
        "arn:aws:lambda:*:*:function:ebs-snapshot-manager",
    ]


def test_ssm_runs_only_the_two_documents_and_only_on_instances_that_ask_for_it():
    """The stack's own freeze document (its parameters name volumes, nothing else) and AWS's
    VSS document; never a document that runs any command (AWS-RunShellScript: root on every
    fsfreeze instance for whoever holds the role)."""
    (allow,) = [s for s in statements("ssm:SendCommand") if s["Effect"] == "Allow"]
    assert sorted(allow["Resource"]) == [
        "arn:aws:ec2:*:*:instance/*",
        f"arn:aws:ssm:*:123456789012:document/{creator.FREEZE_DOCUMENT}",
        "arn:aws:ssm:*::document/AWSEC2-CreateVssSnapshot",
    ]
    assert "RunShellScript" not in TEXT and "RunPowerShellScript" not in TEXT


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (f"arn:aws:ssm:us-east-1:123456789012:document/{creator.FREEZE_DOCUMENT}", "allowed"),
        # the same name shared by another account: SSM would run its script as root
        (f"arn:aws:ssm:us-east-1:999988887777:document/{creator.FREEZE_DOCUMENT}", "not allowed"),
        ("arn:aws:ssm:us-east-1::document/AWSEC2-CreateVssSnapshot", "allowed"),
        ("arn:aws:ssm:us-east-1:999988887777:document/AWSEC2-CreateVssSnapshot", "not allowed"),
        ("arn:aws:ssm:us-east-1::document/AWS-RunShellScript", "not allowed"),
    ],
)
def test_only_this_accounts_freeze_document_and_awss_vss_document_may_run(document, expected):
    assert iam_eval.decision(POLICY, "ssm:SendCommand", document, {}) == expected
    (deny,) = [s for s in statements("ssm:SendCommand") if s["Effect"] == "Deny"]
    assert deny["Resource"] == "arn:aws:ec2:*:*:instance/*"
    # A negated operator is true when the tag is missing: untagged instances are denied too.
    assert deny["Condition"] == {
        "StringNotEqualsIgnoreCase": {"aws:ResourceTag/Consistency": ["fsfreeze", "vss"]}
    }
    (reads,) = statements("ssm:GetCommandInvocation")
    assert set(actions(reads)) == {"ssm:GetCommandInvocation", "ssm:DescribeInstanceInformation"}
    assert granted({"ssm"}) == {
        "ssm:SendCommand",
        "ssm:GetCommandInvocation",
        "ssm:DescribeInstanceInformation",
    }


# ---- the policy's conditions, evaluated (moto does not evaluate IAM) ---------------------

SNAPSHOT = "arn:aws:ec2:us-east-1::snapshot/snap-0123456789abcdef0"


def decision(action, resource, context, policy=POLICY):
    """ "allowed", "denied" (an explicit Deny) or "not allowed" (no Allow applies), by the
    evaluator of testkit/iam_eval.py (each rule citing the IAM user guide)."""
    return iam_eval.decision(policy, action, resource, context)


def resource_tags(tags):
    return {f"ec2:resourcetag/{k.lower()}": v for k, v in tags.items()}


VALUES = ["yes", "Yes", "", "2030-01-01", "no", "No", "NO", "false", "0", "off", "OFF", " no"]


@pytest.mark.parametrize("key", ["KeepForever", "keepforever", "KEEPFOREVER"])
@pytest.mark.parametrize("value", VALUES)
def test_iam_refuses_to_delete_exactly_what_the_manager_keeps(key, value):
    tags = {"Type": "Automated", key: value}
    kept = manager.is_kept_forever(tags)
    assert decision("ec2:DeleteSnapshot", SNAPSHOT, resource_tags(tags)) == (
        "denied" if kept else "allowed"
    )


def test_a_key_with_spaces_is_kept_by_the_code_though_iam_cannot_see_it():
    tags = {"Type": "Automated", "KeepForever ": "yes"}  # IAM reads "KeepForever " exactly
    assert manager.is_kept_forever(tags)  # so the manager never asks
    assert decision("ec2:DeleteSnapshot", SNAPSHOT, resource_tags(tags)) == "allowed"


def test_iam_never_deletes_a_snapshot_not_tagged_automated():
    assert decision("ec2:DeleteSnapshot", SNAPSHOT, resource_tags({"Type": "Manual"})) == (
        "not allowed"
    )


@pytest.mark.parametrize("value", VALUES)
def test_keep_forever_may_be_added_but_never_set_to_a_no_word(value):
    context = resource_tags({"Type": "Automated"}) | {
        "aws:requesttag/keepforever": value,
        "aws:tagkeys": ["KeepForever"],
    }
    released = value.lower() in manager.FALSE_WORDS
    assert decision("ec2:CreateTags", SNAPSHOT, context) == ("denied" if released else "allowed")


def test_no_other_tag_may_be_written_on_an_existing_snapshot():
    context = resource_tags({"Type": "Automated"}) | {
        "aws:requesttag/deleteon": "2099-01-01",
        "aws:tagkeys": ["DeleteOn"],
    }
    assert decision("ec2:CreateTags", SNAPSHOT, context) == "not allowed"


def test_a_copy_carries_keep_forever_in_its_copy_call():
    context = {
        "ec2:createaction": "CopySnapshot",
        "aws:requesttag/type": "Automated",
        "aws:requesttag/keepforever": "yes",
        "aws:tagkeys": ["Type", "DeleteOn", "KeepForever"],
    }
    assert decision("ec2:CreateTags", SNAPSHOT, context) == "allowed"
    assert decision("ec2:CopySnapshot", SNAPSHOT, context) == "allowed"


# ---- snapshot locks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, expected",
    [({"Type": "Automated"}, "allowed"), ({"Type": "Manual"}, "not allowed"), ({}, "not allowed")],
)
def test_only_automated_snapshots_may_be_locked(tags, expected):
    assert decision("ec2:LockSnapshot", SNAPSHOT, resource_tags(tags)) == expected


def test_nothing_is_ever_unlocked_even_after_an_edit_that_allows_every_ec2_action():
    widened = {
        **POLICY,
        "Statement": [
            *POLICY["Statement"],
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        ],
    }
    for tags in ({"Type": "Automated"}, {"Type": "Manual"}, {}):
        context = resource_tags(tags)
        assert decision("ec2:UnlockSnapshot", SNAPSHOT, context) == "denied"
        assert decision("ec2:UnlockSnapshot", SNAPSHOT, context, widened) == "denied"
    (deny,) = statements("ec2:UnlockSnapshot")
    assert deny == {
        "Sid": "NeverUnlock",
        "Effect": "Deny",
        "Action": "ec2:UnlockSnapshot",
        "Resource": "*",
    }


def test_locks_can_be_read_anywhere_but_not_changed_on_other_snapshots():
    assert decision("ec2:DescribeLockedSnapshots", "*", {}) == "allowed"
    (lock,) = statements("ec2:LockSnapshot")
    assert lock["Resource"] == "arn:aws:ec2:*::snapshot/*"
    assert lock["Condition"] == {"StringEquals": {"ec2:ResourceTag/Type": "Automated"}}


# ---- restore drills ----------------------------------------------------------------------

VOLUME = "arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0"


def create_volume(volume, snapshot):
    """CreateVolume as IAM authorises it: on the new volume (its request context) and on
    the source snapshot, if any (its own tags); each must be allowed, and no Deny apply."""
    found = {decision("ec2:CreateVolume", VOLUME, volume)}
    if snapshot is not None:
        found.add(decision("ec2:CreateVolume", SNAPSHOT, snapshot))
    return "denied" if "denied" in found else "allowed" if found == {"allowed"} else "not allowed"


DRILL = {
    "aws:requesttag/type": "RestoreDrill",
    "ec2:volumetype": "gp3",
    "ec2:parentsnapshot": SNAPSHOT,
}


@pytest.mark.parametrize(
    "volume, snapshot_type, expected",
    [
        (DRILL, "Automated", "allowed"),
        (DRILL, "Manual", "denied"),  # only from the jobs' own snapshots
        (DRILL | {"aws:requesttag/type": "Other"}, "Automated", "denied"),  # only a drill
        ({k: v for k, v in DRILL.items() if "requesttag" not in k}, "Automated", "denied"),
        (DRILL | {"ec2:volumetype": "io2"}, "Automated", "not allowed"),  # gp3 only
        ({k: v for k, v in DRILL.items() if k != "ec2:parentsnapshot"}, None, "not allowed"),
    ],
)
def test_a_volume_is_created_only_as_a_gp3_drill_of_an_automated_snapshot(
    volume, snapshot_type, expected
):
    # The snapshot's context has its own tags and no request tags (the service
    # authorization reference lists aws:RequestTag for CreateVolume's volume only).
    snapshot = resource_tags({"Type": snapshot_type}) if snapshot_type else None
    assert create_volume(volume, snapshot) == expected


@pytest.mark.parametrize(
    "tags, expected",
    [({"Type": "RestoreDrill"}, "allowed"), ({"Type": "Data"}, "not allowed"), ({}, "not allowed")],
)
def test_only_drill_volumes_can_be_deleted(tags, expected):
    assert decision("ec2:DeleteVolume", VOLUME, resource_tags(tags)) == expected


def test_drill_volumes_are_tagged_only_at_creation_and_snapshots_only_with_the_result():
    assert decision("ec2:CreateTags", VOLUME, {"ec2:createaction": "CreateVolume"}) == "allowed"
    assert decision("ec2:CreateTags", VOLUME, {"aws:tagkeys": ["Type"]}) == "not allowed"
    result = resource_tags({"Type": "Automated"}) | {"aws:tagkeys": ["RestoreDrill"]}
    assert decision("ec2:CreateTags", SNAPSHOT, result) == "allowed"
    other = resource_tags({"Type": "Automated"}) | {"aws:tagkeys": ["RestoreDrill", "DeleteOn"]}
    assert decision("ec2:CreateTags", SNAPSHOT, other) == "not allowed"
    manual = resource_tags({"Type": "Manual"}) | {"aws:tagkeys": ["RestoreDrill"]}
    assert decision("ec2:CreateTags", SNAPSHOT, manual) == "not allowed"


# ---- the archive tier --------------------------------------------------------------------

WIDENED = {
    **POLICY,
    "Statement": [*POLICY["Statement"], {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}],
}


@pytest.mark.parametrize("action", ["ec2:ModifySnapshotTier", "ec2:RestoreSnapshotTier"])
@pytest.mark.parametrize(
    "tags, expected",
    [({"Type": "Automated"}, "allowed"), ({"Type": "Manual"}, "denied"), ({}, "denied")],
)
def test_only_automated_snapshots_are_archived_or_restored_even_after_a_widening(
    action, tags, expected
):
    assert decision(action, SNAPSHOT, resource_tags(tags)) == expected
    assert decision(action, SNAPSHOT, resource_tags(tags), WIDENED) == expected
    assert decision("ec2:DescribeSnapshotTierStatus", "*", {}) == "allowed"


@pytest.mark.parametrize(
    "keys, expected",
    [
        (["Restore_Requested"], "allowed"),
        (["Archive_Note"], "allowed"),
        (["Restore_Requested", "DeleteOn"], "not allowed"),
        (["Archive"], "not allowed"),  # only the creator writes Archive, in its create call
    ],
)
def test_the_manager_writes_only_its_archive_note_and_the_restore_request(keys, expected):
    context = resource_tags({"Type": "Automated"}) | {"aws:tagkeys": keys}
    assert decision("ec2:CreateTags", SNAPSHOT, context) == expected
    manual = resource_tags({"Type": "Manual"}) | {"aws:tagkeys": keys}
    assert decision("ec2:CreateTags", SNAPSHOT, manual) == "not allowed"


@pytest.mark.parametrize(
    "keys, policy, expected",
    [
        (["Restore"], POLICY, "allowed"),
        (["Restore", "Archive"], POLICY, "allowed"),  # a permanent restore
        (["Restore_Requested"], POLICY, "allowed"),
        (["Name"], POLICY, "not allowed"),
        (["Restore", "KeepForever"], POLICY, "denied"),
        (["keepforever"], WIDENED, "denied"),
        (["DeleteOn"], WIDENED, "denied"),
        (["Type"], WIDENED, "denied"),
        (["Lock"], WIDENED, "denied"),
        (None, POLICY, "denied"),  # DeleteTags without keys removes every tag
        (None, WIDENED, "denied"),
    ],
)
def test_tags_are_removed_only_to_replace_a_restore_request(keys, policy, expected):
    context = resource_tags({"Type": "Automated"})
    if keys is not None:
        context["aws:tagkeys"] = keys
    assert decision("ec2:DeleteTags", SNAPSHOT, context, policy) == expected
    manual = resource_tags({"Type": "Manual"}) | {"aws:tagkeys": ["Restore"]}
    assert decision("ec2:DeleteTags", SNAPSHOT, manual) == "not allowed"


# ---- Copy_State: the copier marks its primaries pending or done ------------------------


@pytest.mark.parametrize(
    "keys, value, snapshot_type, policy, expected",
    [
        (["Copy_State"], "done", "Automated", POLICY, "allowed"),
        (["Copy_State"], "pending", "Automated", POLICY, "allowed"),
        (["Copy_State"], "done", "Manual", POLICY, "not allowed"),
        (["Copy_State"], "Done", "Automated", POLICY, "denied"),
        (["Copy_State", "DeleteOn"], "done", "Automated", POLICY, "not allowed"),
        (["Copy_State"], "finished", "Automated", WIDENED, "denied"),  # only the two values
        (["KeepForever"], None, "Automated", WIDENED, "allowed"),  # the Deny is Copy_State's
    ],
)
def test_the_copier_writes_copy_state_pending_or_done_on_automated_snapshots_only(
    keys, value, snapshot_type, policy, expected
):
    context = resource_tags({"Type": snapshot_type}) | {"aws:tagkeys": keys}
    if value is not None:
        context["aws:requesttag/copy_state"] = value
    assert decision("ec2:CreateTags", SNAPSHOT, context, policy) == expected


# ---- KMS: encrypt only with keys of this account (Copy_KmsKeyId) ------------------------

OWN, CENTRAL, STRANGER = "111122223333", "444455556666", "999988887777"
KEY = "arn:aws:kms:eu-west-1:{}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# The actions that encrypt under a key: a new data key for a copy or a volume (KMS developer
# guide, "How Amazon EBS uses AWS KMS": "When you create an encrypted EBS volume, Amazon EBS
# sends a GenerateDataKeyWithoutPlaintext request"), or re-encrypting a copy's data key to it.
ENCRYPT = ["kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo"]
DECRYPT = ["kms:DescribeKey", "kms:Decrypt", "kms:ReEncryptFrom", "kms:CreateGrant"]


def through_ec2(key_account):
    """A KMS request EC2 makes for the role: aws:ResourceAccount is the key's account (the
    IAM user guide lists no exception for KMS, aws-facts.md)."""
    return {
        "kms:viaservice": "ec2.eu-west-1.amazonaws.com",
        "aws:principalaccount": OWN,
        "aws:resourceaccount": key_account,
    }


@pytest.mark.parametrize("action", ENCRYPT)
def test_copies_and_drill_volumes_are_encrypted_only_under_this_accounts_keys(action):
    # this account's keys: Copy_KmsKeyId, the share key of vault staging copies, a drill
    # volume from a snapshot under this account's key
    expected = "not allowed" if action == "kms:GenerateDataKey" else "allowed"  # never needed
    assert decision(action, KEY.format(OWN), through_ec2(OWN)) == expected
    # someone else's key, named in a Copy_KmsKeyId: refused, even after a widening
    widened = {
        **POLICY,
        "Statement": [
            *POLICY["Statement"],
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        ],
    }
    for policy in (POLICY, widened):
        assert decision(action, KEY.format(STRANGER), through_ec2(STRANGER), policy) == "denied"


@pytest.mark.parametrize("action", DECRYPT)
def test_a_snapshot_under_any_key_the_account_may_use_can_still_be_read(action):
    for account in (OWN, CENTRAL, STRANGER):
        assert decision(action, KEY.format(account), through_ec2(account)) == "allowed"
    if action != "kms:DescribeKey":  # which the copier also calls itself (AWS managed?)
        outside_ec2 = through_ec2(OWN) | {"kms:viaservice": "s3.eu-west-1.amazonaws.com"}
        assert decision(action, KEY.format(OWN), outside_ec2) == "not allowed"


@pytest.mark.parametrize("action", ENCRYPT[1:])
def test_the_templates_key_accounts_may_encrypt_too(action):
    from test_template import role_policy

    policy = role_policy(CopyKmsKeyAccountIds=CENTRAL)
    assert decision(action, KEY.format(CENTRAL), through_ec2(CENTRAL), policy) == "allowed"
    assert decision(action, KEY.format(OWN), through_ec2(OWN), policy) == "allowed"
    assert decision(action, KEY.format(STRANGER), through_ec2(STRANGER), policy) == "denied"
    # without the parameter, the central account's keys are someone else's
    assert decision(action, KEY.format(CENTRAL), through_ec2(CENTRAL)) == "denied"
