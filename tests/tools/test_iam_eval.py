"""The tests' IAM evaluator (testkit/iam_eval.py) against the IAM user guide's own statements,
so that a policy test that passes passes for IAM's reasons."""

import pytest

from testkit.iam_eval import combined, decision, holds

SNAP = "arn:aws:ec2:us-east-1::snapshot/snap-1"


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("StringEquals", False),  # "the values do not match"
        ("StringLike", False),
        ("StringNotEquals", True),  # a negated operator on an absent key holds
        ("StringNotEqualsIgnoreCase", True),
        ("ArnNotLike", True),
        ("ArnLike", False),
        ("StringEqualsIfExists", True),  # ...IfExists: true when the key is absent
        ("ForAllValues:StringEquals", True),  # "true if there are no context keys"
        ("ForAnyValue:StringEquals", False),
        ("ForAnyValue:StringNotEquals", False),
    ],
)
def test_an_absent_key(operator, expected):
    assert holds(operator, "aws:RequestTag/Team", "blue", {}) is expected


def test_key_names_are_case_insensitive_values_are_not_unless_ignore_case():
    context = {"aws:requesttag/team": "Blue"}
    assert holds("StringEquals", "aws:RequestTag/TEAM", "Blue", context)
    assert not holds("StringEquals", "aws:RequestTag/Team", "blue", context)
    assert holds("StringEqualsIgnoreCase", "aws:RequestTag/Team", "blue", context)


def test_a_variable_with_no_value_matches_nothing_and_inverted_operators_match_it():
    """IAM user guide, "Policy variables with no value"."""
    context = {"s3:existingobjecttag/team": "red"}  # no aws:PrincipalTag/Team
    var = "${aws:PrincipalTag/Team}"
    assert not holds("StringEquals", "s3:ExistingObjectTag/Team", var, context)
    assert not holds("StringLike", "s3:ExistingObjectTag/Team", var, context)
    assert holds("StringNotEquals", "s3:ExistingObjectTag/Team", var, context)
    assert holds("StringNotLike", "s3:ExistingObjectTag/Team", var, context)
    context["aws:principaltag/team"] = "red"
    assert holds("StringEquals", "s3:ExistingObjectTag/Team", var, context)
    assert not holds("StringNotEquals", "s3:ExistingObjectTag/Team", var, context)


def test_a_variable_takes_its_default_and_its_value_is_never_a_wildcard():
    var = "arn:aws:s3:::bucket-${aws:PrincipalTag/team, 'company-wide'}"
    assert holds("StringEquals", "k", var, {"k": "arn:aws:s3:::bucket-company-wide"})
    context = {"aws:principaltag/team": "*", "k": "anything"}
    assert not holds("StringLike", "k", "${aws:PrincipalTag/team}", context)
    assert holds("StringLike", "k", "${*}", {"k": "*"}) and not holds(
        "StringLike", "k", "${*}", {"k": "x"}
    )


def test_arn_like_matches_each_component_on_its_own():
    pattern = "arn:aws:iam::*:role/ebs-snapshot-lifecycle/*"
    role = "arn:aws:iam::111122223333:role/ebs-snapshot-lifecycle/ebs-snapshots-Role-AB12"
    assert holds("ArnLike", "aws:PrincipalArn", pattern, {"aws:principalarn": role})
    other = "arn:aws:iam::111122223333:role/admin"
    assert holds("ArnNotLike", "aws:PrincipalArn", pattern, {"aws:principalarn": other})
    # a * in the account component cannot reach across a colon
    assert not holds("ArnLike", "k", "arn:aws:iam::*:role/x", {"k": "arn:aws:iam::1:2:role/x"})
    # the sixth component runs to the end, colons and all
    assert holds(
        "ArnLike", "k", "arn:aws:logs:*:*:log-group:*", {"k": "arn:aws:logs:r:1:log-group:g:*"}
    )


def test_a_deny_wins_and_nothing_is_allowed_by_default():
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:DeleteSnapshot", "Resource": "*"},
        ]
    }
    assert decision(policy, "ec2:deletesnapshot", SNAP, {}) == "denied"  # action case-insensitive
    assert decision(policy, "ec2:CreateTags", SNAP, {}) == "allowed"
    assert decision(policy, "s3:GetObject", "*", {}) == "not allowed"
    assert combined("allowed", "not allowed") == "not allowed"
    assert combined("allowed", "denied") == "denied" and combined("allowed", "allowed") == "allowed"


def test_a_trust_policy_names_its_principals():
    trust = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["111122223333"]}, "Action": "sts:AssumeRole"}
        ]
    }
    role = "arn:aws:iam::222233334444:role/r"
    mine = {"account": "111122223333", "arn": "arn:aws:iam::111122223333:role/jobs"}
    other = {"account": "444455556666", "arn": "arn:aws:iam::444455556666:role/jobs"}
    assert decision(trust, "sts:AssumeRole", role, {}, mine) == "allowed"
    assert decision(trust, "sts:AssumeRole", role, {}, other) == "not allowed"
