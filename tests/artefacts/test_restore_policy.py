"""iam-policy-restore.json, the person who restores: evaluated with testkit/iam_eval.py."""

import ast
import json
import re
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from testkit import iam_eval

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "iam-policy-restore.json").read_text()
POLICY = json.loads(TEXT)
VOLUME = "arn:aws:ec2:us-east-1:123456789012:volume/vol-0123456789abcdef0"
SNAPSHOT = "arn:aws:ec2:us-east-1::snapshot/snap-0123456789abcdef0"
INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# Calls the restore modules make through shared code, which the scan of their own part
# cannot see: locks_in_force (common/locks.py) and paginate's operation names.
THROUGH_SHARED = {"ec2:DescribeLockedSnapshots"}


def decision(action, resource, context, policy=POLICY):
    return iam_eval.decision(policy, action, resource, context)


def tags(prefix, found):
    return {f"{prefix}/{k.lower()}": v for k, v in found.items()}


def restore_part():
    text = (ROOT / "ebs_snapshot_manager.py").read_text()
    parts = re.split(r"(?m)^(?=# ---- src/)", text)
    return "".join(p for p in parts if p.startswith("# ---- src/ebs_snapshots/manager/restore_"))


def calls_in_restore_code():
    session, operations = botocore.session.get_session(), {}
    for service in ("ec2", "kms"):
        for name in session.get_service_model(service).operation_names:
            operations[xform_name(name)] = f"{service}:{name}"
    used = set(THROUGH_SHARED)
    for node in ast.walk(ast.parse(restore_part())):
        if isinstance(node, ast.Attribute) and node.attr in operations:
            used.add(operations[node.attr])
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "paginate":
            used.add(operations[node.args[1].value])
        if isinstance(node, ast.Constant) and node.value == "TagSpecifications":
            used.add("ec2:CreateTags")
    return used


def granted():
    found = set()
    for stmt in POLICY["Statement"]:
        if stmt["Effect"] == "Allow":
            found |= set([stmt["Action"]] if isinstance(stmt["Action"], str) else stmt["Action"])
    return found


def test_parliament_finds_nothing_above_low():
    assert iam_eval.findings_above_low(TEXT) == []


def test_it_grants_exactly_the_calls_the_restore_code_makes():
    used = calls_in_restore_code()
    assert {"ec2:CreateVolume", "ec2:StopInstances", "kms:DescribeKey"} <= used  # scan works
    assert granted() - {a for a in granted() if a.startswith(("kms:", "sts:"))} == {
        a for a in used if a.startswith("ec2:")
    }
    assert "kms:DescribeKey" in granted()
    # sts: the restore from the vault opens the vault's restorer role (vault_client, with
    # the session tag), which the restore code calls by name
    assert {a for a in granted() if a.startswith("sts:")} == {"sts:AssumeRole", "sts:TagSession"}
    assert "vault_client(" in restore_part()


def test_the_deploy_page_and_restore_page_say_why_of_each_statement():
    text = (ROOT / "docs" / "restore.md").read_text()
    table = text[text.index("## The permissions") :]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert {s["Sid"] for s in POLICY["Statement"]} == rows


RESTORED = {"aws:requesttag/restore_purpose": "in-place"}
RESTORED |= {"aws:requesttag/restore_instance": "i-1", "aws:requesttag/restore_point": "rp-1"}


@pytest.mark.parametrize(
    "volume, snapshot_type, expected",
    [
        (RESTORED, "Automated", "allowed"),
        (RESTORED | {"aws:requesttag/restore_purpose": "side-by-side"}, "Automated", "allowed"),
        (RESTORED, "Manual", "denied"),  # only the tool's own snapshots
        (RESTORED, None, "denied"),  # an untagged snapshot: the negated operator holds
        (RESTORED | {"aws:requesttag/restore_purpose": "scratch"}, "Automated", "denied"),
        ({}, "Automated", "denied"),  # a volume not tagged as a restore
    ],
)
def test_a_volume_is_created_only_as_a_tagged_restore_of_an_automated_snapshot(
    volume, snapshot_type, expected
):
    snapshot = tags("ec2:resourcetag", {"Type": snapshot_type}) if snapshot_type else {}
    found = {decision("ec2:CreateVolume", VOLUME, volume)}
    found.add(decision("ec2:CreateVolume", SNAPSHOT, snapshot))
    result = "denied" if "denied" in found else "allowed" if found == {"allowed"} else "not"
    assert result == expected


@pytest.mark.parametrize("action", ["ec2:StopInstances", "ec2:StartInstances"])
@pytest.mark.parametrize(
    "backup, expected", [("Yes", "allowed"), ("true", "allowed"), ("No", "not allowed")]
)
def test_only_backed_up_instances_are_stopped_or_started(action, backup, expected):
    assert decision(action, INSTANCE, tags("ec2:resourcetag", {"Backup": backup})) == expected
    assert decision(action, INSTANCE, {}) == "not allowed"


@pytest.mark.parametrize("action", ["ec2:AttachVolume", "ec2:DetachVolume"])
def test_volumes_are_swapped_only_if_a_restore_tagged_them_on_a_backed_up_instance(action):
    instance = tags("ec2:resourcetag", {"Backup": "yes"})
    volume = tags("ec2:resourcetag", {"Restore_Instance": "i-1"})
    assert decision(action, INSTANCE, instance) == "allowed"
    assert decision(action, VOLUME, volume) == "allowed"
    assert decision(action, VOLUME, {}) == "not allowed"
    assert decision(action, INSTANCE, tags("ec2:resourcetag", {"Backup": "no"})) == "not allowed"


@pytest.mark.parametrize(
    "resource, keys, context, expected",
    [
        (VOLUME, ["Replaced_By", "Replaced_On", "Restore_Device"], {}, "allowed"),
        (VOLUME, ["Restore_UndoneOn"], {}, "allowed"),
        (VOLUME, ["Backup"], {}, "not allowed"),
        (VOLUME, ["Name"], {"ec2:createaction": "CreateVolume"}, "allowed"),
        (SNAPSHOT, ["Restore"], {"ec2:resourcetag/type": "Automated"}, "allowed"),
        (SNAPSHOT, ["Restore"], {"ec2:resourcetag/type": "Manual"}, "not allowed"),
        (SNAPSHOT, ["DeleteOn"], {"ec2:resourcetag/type": "Automated"}, "not allowed"),
        (SNAPSHOT, ["KeepForever"], {"ec2:resourcetag/type": "Automated"}, "not allowed"),
    ],
)
def test_tags_written_are_only_the_restores_own(resource, keys, context, expected):
    assert decision("ec2:CreateTags", resource, context | {"aws:tagkeys": keys}) == expected


def test_keys_are_used_only_through_ec2():
    via = {"kms:viaservice": "ec2.us-east-1.amazonaws.com"}
    assert decision("kms:CreateGrant", KEY, via) == "allowed"
    assert decision("kms:Decrypt", KEY, {}) == "not allowed"
    assert decision("kms:DescribeKey", KEY, {}) == "allowed"


@pytest.mark.parametrize(
    "action",
    ["ec2:DeleteVolume", "ec2:DeleteSnapshot", "ec2:TerminateInstances", "ec2:DeleteTags"],
)
def test_nothing_is_ever_deleted_or_terminated(action):
    for resource in (VOLUME, SNAPSHOT, INSTANCE):
        assert decision(action, resource, tags("ec2:resourcetag", {"Backup": "yes"})) != "allowed"
