"""The IAM policy, read statically: moto does not evaluate IAM conditions."""

import json
from pathlib import Path

POLICY = json.loads((Path(__file__).resolve().parent.parent / "iam-policy.json").read_text())


def statements(action):
    return [
        s
        for s in POLICY["Statement"]
        if action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]


def test_policy_is_valid_json_with_a_sid_on_each_statement():
    assert POLICY["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in POLICY["Statement"]]
    assert len(sids) == len(set(sids))
    assert all(s["Effect"] == "Allow" for s in POLICY["Statement"])


def test_delete_is_only_allowed_on_snapshots_tagged_automated():
    (stmt,) = statements("ec2:DeleteSnapshot")
    assert stmt["Resource"] == "arn:aws:ec2:*::snapshot/*"
    assert stmt["Condition"] == {"StringEquals": {"ec2:ResourceTag/Type": "Automated"}}


def test_snapshots_can_only_be_created_or_copied_tagged_automated():
    for action in ("ec2:CreateSnapshot", "ec2:CopySnapshot"):
        on_snapshots = [s for s in statements(action) if "snapshot/" in str(s["Resource"])]
        assert on_snapshots and all(
            s["Condition"]["StringEquals"]["aws:RequestTag/Type"] == "Automated"
            for s in on_snapshots
        )


def test_create_tags_is_never_unconditional():
    for stmt in statements("ec2:CreateTags"):
        assert stmt["Resource"] == "arn:aws:ec2:*::snapshot/*"
        assert stmt["Condition"]


def test_the_only_lambda_permission_is_invoking_the_two_jobs_that_hand_off():
    (stmt,) = statements("lambda:InvokeFunction")
    assert stmt["Action"] == "lambda:InvokeFunction"
    assert sorted(stmt["Resource"]) == [
        "arn:aws:lambda:*:*:function:ebs-snapshot-copier",
        "arn:aws:lambda:*:*:function:ebs-snapshot-creator",
    ]
