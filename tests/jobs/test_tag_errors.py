"""A tag the jobs cannot honour reaches an alarm (issue 26): each job counts the instances and
snapshots with such a tag in the TagErrors metric (template.yaml's TagErrorsAlarm watches it),
and names each in the summary's tag_errors with the tag and its value. And a Copy_KmsKeyId
may name only a key of this account, or of an account the stack lists."""

import boto3
import pytest
from conftest import DEST, NOW, REGION, launch, make_snapshot, snapshots

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

ME = "123456789012"  # moto's account
CENTRAL, STRANGER = "444455556666", "999988887777"
KEY = "arn:aws:kms:{region}:{account}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def run(job, now=NOW):
    try:
        return job.run({}, None, region=REGION, now=now)
    except job.JobFailed as failed:
        return failed.summary


@pytest.mark.parametrize(
    "tag, value",
    [
        ("Copy_Dest", "eu-west-l"),
        ("Retention", "seven"),
        ("Vault_Account", "111122223333"),  # not one of VAULT_ACCOUNT_IDS
        ("Lock", "governanse"),
        ("Consistency", "fsfreez"),
        ("Weekly_Day", "Funday"),
        ("Archive", "weekly"),
        ("Backup", "maybe"),
    ],
)
def test_a_tag_the_creator_cannot_honour_is_counted_and_named(tag, value):
    tags = {"Backup": "Yes", "Name": "web-1", tag: value}
    iid, _ = launch(tags)
    result = run(creator)
    assert result["tag_errors"] == [{"id": iid, "tag": tag, "value": value, "name": "web-1"}]
    assert result["counts"]["tag_errors"] == 1
    (warning,) = [w for w in result["warnings"] if w["id"] == iid]
    assert (warning["tag"], warning["value"]) == (tag, value)


def test_tag_errors_count_instances_and_reach_the_metric(capsys):
    first, _ = launch({"Backup": "Yes", "Copy_Dest": "eu-west-l", "Retention": "seven"})
    second, _ = launch({"Backup": "Yes", "Lock": "yes please"})
    launch({"Backup": "Yes"})
    result = run(creator)
    assert sorted((e["id"], e["tag"]) for e in result["tag_errors"]) == sorted(
        [(first, "Copy_Dest"), (first, "Retention"), (second, "Lock")]
    )
    summary = [line for line in capsys.readouterr().out.splitlines() if '"summary"' in line]
    assert '"TagErrors": 2' in summary[-1]  # two instances, three tags
    assert "tag errors (3):" in creator.report(result)


def test_a_run_with_good_tags_reports_no_tag_error():
    launch({"Backup": "Yes", "Copy_Dest": DEST, "Retention": "14"})
    result = run(creator)
    assert result["counts"].get("tag_errors") is None and "tag_errors" not in result


def test_the_copier_and_the_manager_count_what_they_cannot_honour():
    bad = make_snapshot({"Type": "Automated", "DeleteOn": "soon", "Copy_Dest": DEST})
    copied = run(copier)
    assert copied["tag_errors"] == [{"id": bad, "tag": "DeleteOn", "value": "soon"}]
    managed = run(manager)
    assert managed["tag_errors"] == [{"id": bad, "tag": "DeleteOn", "value": "soon"}]
    assert bad in snapshots()  # kept: its DeleteOn cannot be read


# ---- Copy_KmsKeyId: keys of this account, or of one the stack lists -----------------------


@pytest.mark.parametrize(
    "key, allowed",
    [
        (KEY.format(region=DEST, account=ME), True),
        ("alias/dr-copies", True),  # a key id or alias without an ARN: this account's
        ("1234abcd-12ab-34cd-56ef-1234567890ab", True),
        (f"arn:aws:kms:{DEST}:{ME}:alias/dr-copies", True),
        (KEY.format(region=DEST, account=CENTRAL), True),  # listed in COPY_KMS_ACCOUNT_IDS
        (KEY.format(region=DEST, account=STRANGER), False),
        (f"arn:aws:kms:{DEST}:{STRANGER}:alias/mine", False),
    ],
)
def test_copy_kms_key_of_another_account_is_refused_by_the_creator(key, allowed, monkeypatch):
    monkeypatch.setenv("COPY_KMS_ACCOUNT_IDS", CENTRAL)
    iid, _ = launch({"Backup": "Yes", "Copy_Dest": DEST, "Copy_KmsKeyId": key})
    result = run(creator)
    ((_, tags),) = snapshots().items()
    assert (tags.get("Copy_KmsKeyId") == key) == allowed
    errors = result.get("tag_errors", [])
    assert errors == ([] if allowed else [{"id": iid, "tag": "Copy_KmsKeyId", "value": key}])
    if not allowed:
        assert f"a key of account {STRANGER}" in result["warnings"][0]["reason"]


def test_the_copier_refuses_a_key_someone_wrote_on_the_primary_later(api):
    """The creator checked the instance's tag; anyone who can tag could change the
    primary's. The copier checks again: a copy under the default key, and a tag error."""
    foreign = KEY.format(region=DEST, account=STRANGER)
    tags = {"Type": "Automated", "DeleteOn": "2027-01-01", "Copy_Dest": DEST}
    primary = make_snapshot(tags | {"Copy_KmsKeyId": foreign})
    result = run(copier)
    (call,) = api.ops("CopySnapshot")
    assert "KmsKeyId" not in call and len(snapshots(DEST)) == 1
    assert result["tag_errors"] == [{"id": primary, "tag": "Copy_KmsKeyId", "value": foreign}]


def test_this_accounts_key_is_asked_of_sts_only_when_a_key_names_an_account(api):
    launch({"Backup": "Yes", "Copy_Dest": DEST, "Copy_KmsKeyId": "alias/dr"})
    run(creator)
    assert "GetCallerIdentity" not in api.names()
    launch(
        {"Backup": "Yes", "Copy_Dest": DEST, "Copy_KmsKeyId": KEY.format(region=DEST, account=ME)}
    )
    run(creator)
    assert api.names().count("GetCallerIdentity") == 1
    assert boto3.client("sts").get_caller_identity()["Account"] == ME


def test_this_account_comes_from_the_lambdas_own_arn_and_sts_down_costs_no_backup(api):
    """An account id is needed only for a key ARN: in Lambda it is read from the function's
    ARN; on the command line from STS; when STS cannot answer, the key is refused (the
    default key, a tag error) and the snapshot is still taken."""
    key = KEY.format(region=DEST, account=ME)
    launch({"Backup": "Yes", "Copy_Dest": DEST, "Copy_KmsKeyId": key})

    class Context:
        invoked_function_arn = f"arn:aws:lambda:{REGION}:{ME}:function:ebs-snapshot-creator"
        aws_request_id = "req-1"

        def get_remaining_time_in_millis(self):
            return 900_000

    creator.run({}, Context(), region=REGION, now=NOW)
    assert "GetCallerIdentity" not in api.names()
    ((_, tags),) = snapshots().items()
    assert tags["Copy_KmsKeyId"] == key
    api.network(
        lambda url: creator.botocore.exceptions.EndpointConnectionError(endpoint_url=url),
        "GetCallerIdentity",
    )
    result = run(creator, now=NOW.replace(hour=6))  # a command-line run: no function ARN
    assert len(snapshots()) == 2 and result["failures"] == []
    (error,) = result["tag_errors"]
    assert error["tag"] == "Copy_KmsKeyId"
    assert "could not be read" in result["warnings"][0]["reason"]
