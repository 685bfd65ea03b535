"""A lost answer never makes a duplicate (issue 26). CreateSnapshot, CreateSnapshots and
CopySnapshot take no ClientToken: EC2 carries out each request it receives. When the request
reached EC2 and its answer was lost (a read timeout, a dropped connection, a 500), botocore
would send it again and make a second snapshot or copy. The jobs look for what it made, by
the tags they set in the call, before sending it again (made_once).

``api.lose_answer`` lets the call reach moto, which makes the snapshot, then loses the
answer, as the network or the server would.
"""

import json
from collections import Counter

import boto3
import pytest
from conftest import (
    DEST,
    NOW,
    REGION,
    client_as,
    launch,
    make_snapshot,
    snapshot_details,
    snapshots,
)

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator

VAULT = "222233334444"
LATER = "2027-01-01"


def primaries():
    return Counter(s["VolumeId"] for s in snapshot_details().values())


@pytest.mark.parametrize("status", [None, 500])  # a read timeout; an error after the work
@pytest.mark.parametrize("event", [{"id": "daily"}, {}])  # with an EventId, or without
def test_a_snapshot_whose_answer_was_lost_is_found_not_made_again(api, status, event):
    _, volumes = launch({"Backup": "Yes"}, devices=("/dev/sda1", "/dev/sdb"))
    lost = volumes["/dev/sdb"]
    api.lose_answer("CreateSnapshot", lambda p, r: p["VolumeId"] == lost, status=status)
    result = creator.run(event, None, now=NOW)
    assert primaries() == Counter({v: 1 for v in volumes.values()})
    (made,) = [c for c in result["created"] if c["volume_id"] == lost]
    assert made["snapshot_id"] in snapshots() and result["failures"] == []
    assert len(api.ops("CreateSnapshot")) == 2  # one call each: the lost one not sent again


def test_a_lost_request_that_made_nothing_is_sent_again(api):
    """A request that never reached EC2 (the timeout came first) made nothing: found
    nothing, it is sent again, and makes the one snapshot."""
    _, volumes = launch({"Backup": "Yes"})
    api.network(
        lambda url: creator.botocore.exceptions.ReadTimeoutError(endpoint_url=url),
        "CreateSnapshot",
        times=1,
    )
    result = creator.run({"id": "daily"}, None, now=NOW)
    assert primaries() == Counter({volumes["/dev/sda1"]: 1}) and result["failures"] == []
    assert len(api.ops("CreateSnapshot")) == 2 and api.slept.count(creator.FIND_WAIT_S) == 2


def test_a_set_whose_answer_was_lost_is_found_not_made_again(api):
    _, volumes = launch({"Backup": "Yes", "Consistency": "instance"}, ("/dev/sda1", "/dev/sdb"))
    api.lose_answer("CreateSnapshots")
    result = creator.run({"id": "daily"}, None, now=NOW)
    assert primaries() == Counter({v: 1 for v in volumes.values()})
    assert {c["volume_id"] for c in result["created"]} == set(volumes.values())
    assert len(api.ops("CreateSnapshots")) == 1


def test_a_copy_whose_answer_was_lost_is_found_not_made_again(api):
    primary = make_snapshot({"Type": "Automated", "DeleteOn": LATER, "Copy_Dest": DEST})
    api.lose_answer("CopySnapshot")
    result = copier.run({}, None, region=REGION, now=NOW)
    (copy,) = snapshots(DEST)
    assert result["copied"] == [
        {
            "snapshot_id": copy,
            "source_snapshot_id": primary,
            "dest_region": DEST,
            "delete_on": LATER,
        }
    ]
    assert len(api.ops("CopySnapshot")) == 1 and result["failures"] == []


def test_staging_and_vault_copies_whose_answers_were_lost_are_found(api, monkeypatch):
    monkeypatch.setenv(creator.VAULT_ACCOUNTS_ENV, VAULT)
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    monkeypatch.setenv("VAULT_SHARE_KMS_KEY", key)
    tags = {"Type": "Automated", "DeleteOn": LATER, "Vault_Account": VAULT}
    primary = make_snapshot(tags, encrypted=True)  # the AWS managed key: staged first
    api.lose_answer("CopySnapshot", times=2)  # the staging copy's, then the vault copy's
    for _ in range(2):
        copier.run({}, None, region=REGION, now=NOW)
    assert len([s for s in snapshots() if s != primary]) == 1  # one staging copy
    vault = client_as(f"arn:aws:iam::{VAULT}:role/ebs-snapshot-vault-writer")
    assert len(vault.describe_snapshots(OwnerIds=["self"])["Snapshots"]) == 1
    assert len(api.ops("CopySnapshot")) == 2  # neither sent twice


def test_throttling_and_refused_connections_are_still_retried_by_botocore(api):
    """Nothing was made: botocore's own retries, as before."""
    _, volumes = launch({"Backup": "Yes"})
    api.fail("CreateSnapshot", "RequestLimitExceeded", times=2)
    api.network(
        lambda url: creator.botocore.exceptions.EndpointConnectionError(endpoint_url=url),
        "CreateSnapshot",
        times=1,
    )
    creator.run({"id": "daily"}, None, now=NOW)
    assert primaries() == Counter({volumes["/dev/sda1"]: 1})
    assert len(api.ops("CreateSnapshot")) == 1  # one call, four attempts
    assert api.attempts_of.count(("CreateSnapshot", REGION)) == 4


def hide_from_listings(api, hidden, calls):
    """The next ``calls`` DescribeSnapshots with filters do not list the snapshots of the
    volumes in ``hidden`` (EC2's listings lag); later ones, and lookups by id, do."""
    left = [calls]

    def listed(answer):
        if left[0] <= 0:
            return answer
        left[0] -= 1
        shown = [s for s in answer["Snapshots"] if s["VolumeId"] not in hidden]
        return {**answer, "Snapshots": shown}

    api.after["DescribeSnapshots"] = listed


def test_a_busy_volume_after_a_lost_answer_is_looked_for_again_before_a_resend(api):
    """The lost call made the snapshot, the looks did not see it yet, and the resend met
    SnapshotCreationPerVolumeRateExceeded (the volume is busy with that very snapshot): the
    retry 15 s later looks first, and finds it."""
    _, volumes = launch({"Backup": "Yes"})
    vid = volumes["/dev/sda1"]
    api.lose_answer("CreateSnapshot")
    after_the_loss = lambda params, region: api.lost[0]["left"] == 0  # noqa: E731
    api.fail("CreateSnapshot", creator.PER_VOLUME_RATE_CODE, when=after_the_loss, times=1)
    hide_from_listings(api, {vid}, 1 + creator.FIND_TRIES)  # the event's listing, one look
    result = creator.run({"id": "daily"}, None, now=NOW)
    assert primaries() == Counter({vid: 1}) and result["failures"] == []
    assert creator.PER_VOLUME_WAIT_S in api.slept
    assert len(api.ops("CreateSnapshot")) == 2  # the lost one, the busy one: no third


def test_a_set_found_in_part_is_not_made_again_and_says_so(api):
    """A set is made whole or not at all: at the last look, what part is listed is taken as
    made; the rest is named in a warning."""
    _, volumes = launch({"Backup": "Yes", "Consistency": "instance"}, ("/dev/sda1", "/dev/sdb"))
    late = volumes["/dev/sdb"]
    api.lose_answer("CreateSnapshots")
    hide_from_listings(api, {late}, 100)  # never listed during this run
    result = creator.run({"id": "daily"}, None, now=NOW)
    api.after.clear()  # listed at last
    assert len(api.ops("CreateSnapshots")) == 1
    assert primaries() == Counter({v: 1 for v in volumes.values()})
    assert [c["volume_id"] for c in result["created"]] == [volumes["/dev/sda1"]]
    assert any(w["id"] == late and "not listed yet" in w["reason"] for w in result["warnings"])


def test_a_hand_off_after_a_lost_answer_tells_the_next_invocation_to_look_first(api):
    """Time ran out while looking for what a lost call made: the hand-off names it (maybe),
    and the next invocation looks before sending, though its listing by EventId lags."""
    (first, second) = sorted(
        launch({"Backup": "Yes"})[1]["/dev/sda1"] for _ in range(2)
    )  # two instances, one volume each
    keys = {}
    api.lose_answer("CreateSnapshot", lambda p, r: p["VolumeId"] == second)
    api.stub("Invoke", {"StatusCode": 202})

    class Context:  # 25 s an attempt: the listing, both calls and one look, then too little
        invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:ebs-snapshot-creator"
        aws_request_id = "req-1"

        def __init__(self):
            self.base = api.attempts

        def get_remaining_time_in_millis(self):
            return (240 - 25 * (api.attempts - self.base)) * 1000

    hide_from_listings(api, {second}, 100)
    result = creator.run({"id": "daily"}, Context(), now=NOW)
    (invoke,) = api.ops("Invoke")
    payload = json.loads(invoke["Payload"])
    keys = payload["handoff"]["maybe"]
    assert len(keys) == 1 and keys[0].endswith(second) and result["handed_off"]
    hide_from_listings(api, {second}, 1)  # the next invocation's listing by EventId lags
    api.calls.clear()
    creator.run(payload, None, now=NOW)
    assert api.ops("CreateSnapshot") == []  # looked first, found it
    api.after.clear()
    assert primaries() == Counter({first: 1, second: 1})


def test_a_dry_run_probe_that_loses_its_answer_is_retried_by_botocore(api):
    """A DryRun makes nothing: botocore's own retries, and no failure."""
    launch({"Backup": "Yes"})
    api.network(
        lambda url: creator.botocore.exceptions.ReadTimeoutError(endpoint_url=url),
        "CreateSnapshot",
        times=1,
    )
    result = creator.run({"dry_run": True}, None, now=NOW)
    assert result["failures"] == [] and len(result["would_create"]) == 1
    assert api.attempts_of.count(("CreateSnapshot", REGION)) == 2 and snapshot_details() == {}
