"""Fault suite: throttling, failing calls, repeated events, running out of Lambda time.

Faults come in through botocore's hooks (tests/conftest.py, ``api``), never by editing the
job code. Every test asserts the AWS state left behind: exactly the snapshots that must
exist in each region, and nothing else.
"""

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.parsers import ResponseParserError
from conftest import (
    DEST,
    DEST2,
    NOW,
    REGION,
    launch,
    make_snapshot,
    moto_snapshot,
    snapshot_details,
    snapshot_of,
    snapshots,
)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

ARN = "arn:aws:lambda:{region}:123456789012:function:ebs-snapshot-{job}"


class Context:
    """A Lambda context whose clock advances ``per_attempt_ms`` with every HTTP attempt,
    and with every sleep: as long as it asked, or always the longest backoff (worst case)."""

    def __init__(
        self, api, job, start_ms=900_000, per_attempt_ms=0, request_id="req-1", worst_backoff=False
    ):
        self.api, self.start_ms, self.per_attempt_ms = api, start_ms, per_attempt_ms
        self.base, self.base_sleeps = api.attempts, len(api.slept)
        self.worst_backoff = worst_backoff
        self.aws_request_id = request_id
        self.invoked_function_arn = ARN.format(region=REGION, job=job)

    def get_remaining_time_in_millis(self):
        sleeps = self.api.slept[self.base_sleeps :]
        slept = len(sleeps) * creator.BACKOFF_CAP_S if self.worst_backoff else sum(sleeps)
        attempts = self.api.attempts - self.base
        return self.start_ms - self.per_attempt_ms * attempts - int(slept * 1000)


def volume_counts(region=REGION):
    """{volume id: number of automated primaries of it}."""
    return Counter(
        s["VolumeId"]
        for sid, s in snapshot_details(region).items()
        if "Source_SnapshotId" not in snapshots(region)[sid]
    )


def fleet(n=4, devices=("/dev/sda1", "/dev/sdb"), **tags):
    vols = []
    for i in range(n):
        _, v = launch({"Backup": "Yes", "Name": f"host-{i}", **tags}, devices=devices)
        vols += v.values()
    return vols


# ---- throttling -------------------------------------------------------------------------


def test_thirty_percent_throttled_every_job_still_does_all_its_work(api):
    vols = fleet(10, Copy_Dest=DEST)
    expired = [make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"}) for _ in range(10)]
    kept = make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01", "KeepForever": "yes"})
    manual = make_snapshot({"DeleteOn": "2026-11-01"})
    api.throttle(0.3, seed=20261126)
    before = api.attempts
    event = {"id": "evt-throttled"}
    creator.run(event, None, now=NOW)
    copier.run(event, None, now=NOW)
    manager.run(event, None, now=NOW)
    api.throttle(0, seed=0)  # the checks below must not be throttled themselves
    assert api.throttled > 15  # the faults really happened, at about the rate asked
    assert 0.2 < api.throttled / (api.attempts - before) < 0.4
    remaining = snapshot_details()
    primaries = {sid for sid, t in snapshots().items() if t.get("EventId") == "evt-throttled"}
    assert set(remaining) == primaries | {kept, manual}  # the expired ones are gone
    assert Counter(remaining[p]["VolumeId"] for p in primaries) == Counter({v: 1 for v in vols})
    assert not set(expired) & set(remaining)
    sources = Counter(t["Source_SnapshotId"] for t in snapshots(DEST).values())
    assert sources == Counter({p: 1 for p in primaries})
    assert len(api.slept) >= api.throttled  # each throttled attempt backed off


def test_copier_and_manager_are_idempotent_under_throttling(api):
    vols = fleet(3, Copy_Dest=DEST)
    creator.run({}, None, now=NOW)
    api.throttle(0.3, seed=7)
    for _ in range(2):
        copier.run({"id": "same"}, None, now=NOW)
        manager.run({"id": "same"}, None, now=NOW)
    api.throttle(0, seed=0)
    assert api.throttled > 0
    assert len(snapshots(DEST)) == len(vols)
    assert (
        Counter(t["Source_SnapshotId"] for t in snapshots(DEST).values()).most_common(1)[0][1] == 1
    )


# ---- one failure is not everyone's failure ---------------------------------------------


@pytest.mark.parametrize("code", ["IncorrectState", "InvalidVolume.NotFound"])
def test_a_failing_volume_is_named_the_rest_done_and_a_retry_completes_it(api, code):
    vols = fleet(3)
    bad = vols[2]
    api.fail("CreateSnapshot", code, when=lambda p, r: p["VolumeId"] == bad, times=1)
    event = {"id": "evt-1"}
    with pytest.raises(creator.JobFailed) as err:
        creator.run(event, None, now=NOW)
    assert bad in str(err.value) and code in str(err.value)
    assert volume_counts() == Counter({v: 1 for v in vols if v != bad})
    # Lambda retries the failed event: only the missing volume is snapshotted.
    result = creator.run(event, None, now=NOW)
    assert volume_counts() == Counter({v: 1 for v in vols})
    assert result["counts"]["created"] == 1


def test_snapshot_deleted_by_someone_else_before_the_copy_is_a_named_failure(api):
    a = make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31", "Copy_Dest": DEST})
    b = make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31", "Copy_Dest": DEST})
    api.fail(
        "CopySnapshot", "InvalidSnapshot.NotFound", when=lambda p, r: p["SourceSnapshotId"] == a
    )
    with pytest.raises(copier.JobFailed, match=a):
        copier.run({}, None, now=NOW)
    assert [t["Source_SnapshotId"] for t in snapshots(DEST).values()] == [b]


def test_deleting_a_snapshot_already_gone_is_done_not_failed(api):
    due = [make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"}) for _ in range(3)]
    api.fail(
        "DeleteSnapshot", "InvalidSnapshot.NotFound", when=lambda p, r: p["SnapshotId"] == due[1]
    )
    result = manager.run({}, None, now=NOW)
    assert result["failures"] == []
    assert set(snapshots()) == {due[1]}  # (it was "gone" only in the injected answer)


def test_per_volume_rate_limit_waits_for_that_volume_only(api, monkeypatch):
    vols = fleet(3)  # 6 volumes
    busy, others = vols[0], set(vols[1:])
    others_tried = threading.Event()
    tried = set()

    def refuse_busy_twice(params, region):
        tried.add(params["VolumeId"])
        if others <= tried:
            others_tried.set()
        return params["VolumeId"] == busy

    api.fail(
        "CreateSnapshot", "SnapshotCreationPerVolumeRateExceeded", when=refuse_busy_twice, times=2
    )

    def sleep(seconds):  # the busy volume's wait ends only once all the others were tried
        api.slept.append(seconds)
        if seconds >= creator.PER_VOLUME_WAIT_S:
            assert others_tried.wait(timeout=10), "the wait held the other volumes up"

    monkeypatch.setattr(time, "sleep", sleep)
    result = creator.run({}, None, now=NOW)
    assert volume_counts() == Counter({v: 1 for v in vols})
    assert result["failures"] == []
    assert [s for s in api.slept if s >= creator.PER_VOLUME_WAIT_S] == [
        creator.PER_VOLUME_WAIT_S
    ] * 2


def test_a_volume_that_stays_rate_limited_fails_after_a_few_tries(api):
    vols = fleet(1)
    api.fail(
        "CreateSnapshot",
        "SnapshotCreationPerVolumeRateExceeded",
        when=lambda p, r: p["VolumeId"] == vols[0],
    )
    with pytest.raises(creator.JobFailed, match="SnapshotCreationPerVolumeRateExceeded"):
        creator.run({}, None, now=NOW)
    attempts = [p for p in api.ops("CreateSnapshot") if p["VolumeId"] == vols[0]]
    assert len(attempts) == creator.PER_VOLUME_TRIES + 1
    assert volume_counts() == Counter({vols[1]: 1})


# ---- repeated events --------------------------------------------------------------------


def test_the_same_event_twice_makes_no_duplicates(api):
    vols = fleet(3)
    event = {"id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "source": "aws.events"}
    creator.run(event, None, now=NOW)
    api.calls.clear()
    again = creator.run(event, None, now=NOW)
    assert "CreateSnapshot" not in api.names()
    assert volume_counts() == Counter({v: 1 for v in vols})
    assert {s["id"] for s in again["skipped"]} == set(vols)
    assert all(t["EventId"] == event["id"] for t in snapshots().values())


def test_two_different_events_make_two_snapshots_each():
    vols = fleet(2)
    creator.run({"id": "morning"}, None, now=NOW)
    creator.run({"id": "evening"}, None, now=NOW)
    assert volume_counts() == Counter({v: 2 for v in vols})


def test_a_retried_invocation_without_event_id_is_recognised_by_its_request_id(api):
    iid, vols = launch({"Backup": "Yes"})
    event = {"instance_ids": [iid]}  # "snapshot me now", from a server's cron job
    creator.run(event, Context(api, "creator", request_id="0f8b-retry"), now=NOW)
    creator.run(event, Context(api, "creator", request_id="0f8b-retry"), now=NOW)  # retry
    assert volume_counts() == Counter({vols["/dev/sda1"]: 1})
    creator.run(event, Context(api, "creator", request_id="another-call"), now=NOW)
    assert volume_counts() == Counter({vols["/dev/sda1"]: 2})


# ---- running out of Lambda time ---------------------------------------------------------


def run_watching_the_clock(api, ctx, job, event):
    """Run a job; return (result or exception, time left at the start of each attempt)."""
    seen = []
    api.on_attempt = lambda op, region: seen.append(ctx.get_remaining_time_in_millis())
    try:
        result = job.run(event, ctx, now=NOW)
    except job.JobFailed as exc:
        result = exc
    finally:
        api.on_attempt = None
    assert ctx.get_remaining_time_in_millis() >= 0  # the Lambda was never cut off
    return result, seen


def test_creator_hands_the_rest_to_a_new_invocation_and_nothing_is_cut_off(api):
    vols = fleet(6)  # 12 volumes
    api.stub("Invoke", {"StatusCode": 202})
    ctx = Context(api, "creator", start_ms=150_000, per_attempt_ms=10_000)
    event = {"id": "evt-big", "source": "aws.events"}
    first, seen = run_watching_the_clock(api, ctx, creator, event)
    done_first = sum(volume_counts().values())
    assert 0 < done_first < len(vols)
    assert min(seen) >= creator.ATTEMPT_S * 1000  # no attempt started that could be cut off
    (invoke,) = api.ops("Invoke")
    assert invoke["FunctionName"] == ctx.invoked_function_arn
    assert invoke["InvocationType"] == "Event"
    payload = json.loads(invoke["Payload"])
    assert payload == event | {"handoff": payload["handoff"]}  # and what is done
    (handed,) = first["handed_off"]
    assert handed["id"] == ctx.invoked_function_arn
    assert handed["count"] == len(vols) - done_first
    # Lambda runs the new invocation on the same event, with a fresh clock.
    second = creator.run(payload, Context(api, "creator", request_id="req-2"), now=NOW)
    assert volume_counts() == Counter({v: 1 for v in vols})
    assert second["counts"]["created"] == len(vols) - done_first
    assert second["counts"]["skipped"] == done_first


def test_a_hand_off_of_an_event_without_id_carries_the_request_id(api):
    fleet(3)
    api.stub("Invoke", {"StatusCode": 202})
    ctx = Context(api, "creator", start_ms=130_000, per_attempt_ms=10_000, request_id="r-77")
    creator.run({}, ctx, now=NOW)
    (invoke,) = api.ops("Invoke")
    assert json.loads(invoke["Payload"]).keys() == {"id", "handoff"}
    assert json.loads(invoke["Payload"])["id"] == "r-77"


def hide_new_snapshots(api):
    """Listings (DescribeSnapshots with filters) do not show the snapshots made since the test
    began (nor do the test's own DescribeSnapshots): EC2's Describe calls are eventually
    consistent."""
    made = set()
    for call in ("CreateSnapshot", "CreateSnapshots"):
        api.after[call] = lambda answer: (
            made.update(s["SnapshotId"] for s in answer.get("Snapshots", [answer])),
            answer,
        )[1]

    def listed(answer):
        return {
            **answer,
            "Snapshots": [s for s in answer["Snapshots"] if s["SnapshotId"] not in made],
        }

    api.after["DescribeSnapshots"] = listed


def test_a_hand_off_says_what_is_done_so_a_listing_that_lags_makes_no_duplicate(api):
    """The next invocation learns what is done from the event, not from a listing of
    EventId that may not show the snapshots made a moment ago."""
    vols = fleet(6)  # 12 volumes
    hide_new_snapshots(api)
    api.stub("Invoke", {"StatusCode": 202})
    ctx = Context(api, "creator", start_ms=150_000, per_attempt_ms=10_000)
    event = {"id": "evt-lag"}
    first, _ = run_watching_the_clock(api, ctx, creator, event)
    done_first = len(first["created"])
    assert 0 < done_first < len(vols) and first["handed_off"]
    payloads = [json.loads(i["Payload"]) for i in api.ops("Invoke")]
    for n in range(2, 8):  # each hand-off's payload to the next invocation, until done
        api.calls.clear()
        ctx = Context(api, "creator", start_ms=150_000, per_attempt_ms=10_000, request_id=f"r{n}")
        run_watching_the_clock(api, ctx, creator, payloads[-1])
        if not api.ops("Invoke"):
            break
        payloads.append(json.loads(api.ops("Invoke")[0]["Payload"]))
    made = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].snapshots.values()  # unhidden
    assert Counter(s.volume.id for s in made) == Counter({v: 1 for v in vols})  # each once
    assert all(p["id"] == "evt-lag" for p in payloads)


@pytest.mark.parametrize(
    "handoff", ["i-1", {"from": 3, "done": []}, {"from": "i-1"}, {"from": "i-1", "done": [1]}]
)
def test_a_hand_off_that_cannot_be_read_is_refused(handoff):
    with pytest.raises(ValueError, match="handoff"):
        creator.run({"id": "e", "handoff": handoff}, None, now=NOW)


def test_no_progress_at_all_fails_instead_of_handing_off_forever(api):
    fleet(1)
    api.stub("Invoke", {"StatusCode": 202})
    # The listing leaves too little time for the first snapshot's call: nothing was done.
    ctx = Context(api, "creator", start_ms=120_000, per_attempt_ms=20_000)
    with pytest.raises(creator.JobFailed, match="before any progress"):
        creator.run({"id": "e"}, ctx, now=NOW)
    assert api.ops("Invoke") == [] and snapshots() == {}


def test_a_failed_hand_off_fails_the_run_so_lambda_retries_it(api, monkeypatch):
    # One worker: the fake clock counts attempts, so with four a loaded machine could start
    # all three volumes before time ran low, and nothing would be handed off.
    monkeypatch.setattr(creator, "WORKERS", 1)
    vols = fleet(3)
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Invoke")
    api.stub("Invoke", denied)
    ctx = Context(api, "creator", start_ms=130_000, per_attempt_ms=10_000)
    with pytest.raises(creator.JobFailed, match=r"could not hand .*AccessDeniedException"):
        creator.run({"id": "e"}, ctx, now=NOW)
    # Lambda's retry of the failed event finishes the job without duplicates.
    creator.run({"id": "e"}, Context(api, "creator"), now=NOW)
    assert volume_counts() == Counter({v: 1 for v in vols})


def test_copier_hands_the_rest_over_and_the_next_invocation_finishes(api):
    sources = [
        make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31", "Copy_Dest": DEST})
        for _ in range(16)
    ]
    api.stub("Invoke", {"StatusCode": 202})
    ctx = Context(api, "copier", start_ms=150_000, per_attempt_ms=10_000)
    _, seen = run_watching_the_clock(api, ctx, copier, {"id": "c-1"})
    first = len(snapshots(DEST))
    assert 0 < first < len(sources)
    assert min(seen) >= copier.ATTEMPT_S * 1000
    payload = json.loads(api.ops("Invoke")[0]["Payload"])
    copier.run(payload, Context(api, "copier"), now=NOW)
    copies = Counter(t["Source_SnapshotId"] for t in snapshots(DEST).values())
    assert copies == Counter({s: 1 for s in sources})


def test_copier_hand_off_says_which_copies_it_started_so_a_lagging_listing_copies_once(api):
    sources = [
        make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31", "Copy_Dest": DEST})
        for _ in range(16)
    ]
    made = set()
    api.after["CopySnapshot"] = lambda answer: (made.add(answer["SnapshotId"]), answer)[1]
    api.after["DescribeSnapshots"] = lambda answer: {  # the new copies not listed yet
        **answer,
        "Snapshots": [s for s in answer["Snapshots"] if s["SnapshotId"] not in made],
    }
    api.stub("Invoke", {"StatusCode": 202})
    ctx = Context(api, "copier", start_ms=150_000, per_attempt_ms=10_000)
    first, _ = run_watching_the_clock(api, ctx, copier, {"id": "c-1"})
    payload = json.loads(api.ops("Invoke")[0]["Payload"])
    started = sorted(c["source_snapshot_id"] for c in first["copied"])
    assert 0 < len(started) < len(sources) and payload["copies_started"] == {DEST: started}
    second = copier.run(payload, Context(api, "copier"), now=NOW)
    copies = Counter(s.source_snapshot_id for s in moto_copies(DEST))
    assert copies == Counter({s: 1 for s in sources})
    assert len(second["copied"]) == len(sources) - len(started)


def moto_copies(region):
    """The copies moto holds in ``region`` (unhidden), with the primary each names."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    return [
        type("Copy", (), {"source_snapshot_id": backend.tags[s.id]["Source_SnapshotId"]})
        for s in backend.snapshots.values()
        if "Source_SnapshotId" in backend.tags.get(s.id, {})
    ]


def test_manager_hands_the_rest_of_its_sweep_to_a_new_invocation(api):
    due = {make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"}) for _ in range(20)}
    later = make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31"})
    api.stub("Invoke", {"StatusCode": 202})
    ctx = Context(api, "manager", start_ms=130_000, per_attempt_ms=10_000)
    result, seen = run_watching_the_clock(api, ctx, manager, {"id": "m-1"})
    assert min(seen) >= manager.ATTEMPT_S * 1000
    assert (
        "stopped_early" not in result and result["handed_off"][0]["id"] == ctx.invoked_function_arn
    )
    assert 0 < len(due - set(snapshots())) < len(due)
    (invoke,) = api.ops("Invoke")
    assert (
        invoke["InvocationType"] == "Event" and invoke["FunctionName"] == ctx.invoked_function_arn
    )
    payload = json.loads(invoke["Payload"])
    assert payload == {"id": "m-1"}
    manager.run(payload, Context(api, "manager"), now=NOW)
    assert set(snapshots()) == {later}


def test_an_invocation_that_hands_off_never_reads_the_instances(api):
    """The instances (ten thousand in a large region) are read once the listing is over:
    the invocation that finishes does it. Until then every volume's newest snapshot is held
    as if backed up; a gone volume's last one goes once they are read."""
    _, vols = launch({"Backup": "Yes"})
    backed_up = vols["/dev/sda1"]
    due = {aged(backed_up, NOW, 48 + n, "2026-11-01") for n in range(12)}
    newest = aged(backed_up, NOW, 1, "2099-01-01")
    gone = make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"})  # its volume's last
    api.stub("Invoke", {"StatusCode": 202})
    api.page_size = 2  # a listing too long for the first invocation
    ctx = Context(api, "manager", start_ms=130_000, per_attempt_ms=10_000)
    result, _ = run_watching_the_clock(api, ctx, manager, {"id": "m-1"})
    assert result["handed_off"] and 0 < len(due - set(snapshots())) < len(due)
    assert "DescribeInstances" not in api.names() and gone in snapshots()
    manager.run(json.loads(api.ops("Invoke")[0]["Payload"]), Context(api, "manager"), now=NOW)
    assert set(snapshots()) == {newest}
    assert len(api.ops("DescribeInstances")) == 1


def aged(volume_id, now, hours, delete_on):
    """An automated snapshot of that volume, taken ``hours`` before ``now``."""
    sid = snapshot_of(volume_id, {"Type": "Automated", "DeleteOn": delete_on})
    moto_snapshot(sid).start_time = (now - timedelta(hours=hours)).replace(tzinfo=None)
    return sid


def test_manager_that_cannot_hand_off_stops_early_for_its_next_run(api):
    due = {make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"}) for _ in range(20)}
    api.fail("Invoke", "AccessDeniedException", status=403)
    ctx = Context(api, "manager", start_ms=130_000, per_attempt_ms=10_000)
    failed, _ = run_watching_the_clock(api, ctx, manager, {"id": "m-1"})
    result = failed.summary
    assert result["stopped_early"][0]["id"] == REGION
    assert "could not hand" in result["failures"][0]["error"]
    assert 0 < len(due - set(snapshots())) < len(due)


def test_a_listing_is_not_started_with_too_little_time_left(api):
    fleet(1)
    ctx = Context(api, "creator", start_ms=120_000, per_attempt_ms=40_000)
    failed, seen = run_watching_the_clock(api, ctx, creator, {"id": "e"})
    assert "out of Lambda time before any progress" in str(failed)
    assert min(seen) >= creator.ATTEMPT_S * 1000 and len(seen) == 3
    assert snapshots() == {}


def test_a_retry_sleep_that_could_outlive_the_lambda_is_not_started(api):
    fleet(1, devices=("/dev/sda1",))
    api.stub("Invoke", {"StatusCode": 202})
    api.fail("CreateSnapshot", "RequestLimitExceeded")  # throttled, however often it is asked
    # The listing (5 calls) brings the clock to 70 s: one snapshot may start.
    ctx = Context(api, "creator", start_ms=170_000, per_attempt_ms=20_000, worst_backoff=True)
    failed, seen = run_watching_the_clock(api, ctx, creator, {"id": "e"})
    assert "before any progress" in str(failed)  # Lambda retries the event later
    assert len(api.ops("CreateSnapshot")) == 1  # one call; its retries stopped in time
    assert min(seen) >= creator.ATTEMPT_S * 1000
    assert volume_counts() == Counter() and api.ops("Invoke") == []


@pytest.mark.parametrize("event_id", [42, "x" * 300, "événement-🙂"])
def test_an_odd_event_id_still_dedupes(event_id):
    vols = fleet(1)
    for _ in range(2):
        creator.run({"id": event_id}, None, now=NOW)
    assert volume_counts() == Counter({v: 1 for v in vols})
    assert {t["EventId"] for t in snapshots().values()} == {str(event_id)[:256]}


# ---- outages at the HTTP layer: botocore's own exceptions, through its real retries ------


def timeout(url):
    return ReadTimeoutError(endpoint_url=url)


def unreachable(url):
    return EndpointConnectionError(endpoint_url=url)


def garbled(url):  # an HTML page from a proxy, say: botocore cannot parse it
    return ResponseParserError(f"Unable to parse response from {url}: <html>502</html>")


def summary_line(capsys):
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    (line,) = [r for r in lines if r["action"] == "summary"]
    return line


def test_creator_a_timeout_on_one_volume_fails_that_volume_only(api, capsys):
    vols = fleet(4)  # 8 volumes
    bad = vols[5]
    api.network(timeout, "CreateSnapshot", when=lambda p, r: p["VolumeId"] == bad)
    with pytest.raises(creator.JobFailed) as failed:
        creator.run({"id": "e"}, None, now=NOW)
    assert volume_counts() == Counter({v: 1 for v in vols if v != bad})
    (failure,) = failed.value.summary["failures"]
    assert failure["id"] == bad and failure["error"].startswith("ReadTimeoutError: ")
    assert "ec2.us-east-1.amazonaws.com" in failure["error"]  # names the endpoint
    # An answer lost may hide a snapshot made: not resent by botocore, but looked for first
    # (by its EventId), and sent again only when none is found (made_once), SEND_TRIES in all.
    assert len(api.ops("CreateSnapshot")) == 7 + creator.SEND_TRIES
    attempts = [a for a in api.attempts_of if a == ("CreateSnapshot", REGION)]
    assert len(attempts) == 7 + creator.SEND_TRIES
    looks = [p for p in api.ops("DescribeSnapshots") if "Filters" in p and "tag:EventId" in str(p)]
    assert len(looks) >= creator.SEND_TRIES * creator.FIND_TRIES
    line = summary_line(capsys)
    assert (line["SnapshotsCreated"], line["Failures"], line["level"]) == (7, 1, "ERROR")


def test_creator_an_unreadable_listing_ends_the_run_with_its_summary_and_metrics(api, capsys):
    fleet(2)
    api.network(unreachable, "DescribeInstances")
    with pytest.raises(creator.JobFailed, match="EndpointConnectionError") as failed:
        creator.run({"id": "e"}, None, now=NOW)
    (failure,) = failed.value.summary["failures"]
    assert failure["id"] == REGION and "the run stopped" in failure["error"]
    assert snapshots() == {}
    line = summary_line(capsys)
    assert (line["SnapshotsCreated"], line["Failures"]) == (0, 1)


def test_creator_ssm_unreachable_still_takes_the_set(api):
    _, vols = launch(
        {"Backup": "Yes", "Consistency": "fsfreeze"}, devices=("/dev/sda1", "/dev/sdf")
    )
    api.network(unreachable, "DescribeInstanceInformation")
    result = creator.run({}, None, now=NOW)
    assert volume_counts() == Counter({v: 1 for v in vols.values()})
    assert {t["Consistency"] for t in snapshots().values()} == {"crash-fallback"}
    assert "SSM failed: EndpointConnectionError" in result["warnings"][0]["reason"]


def test_creator_a_bug_on_one_odd_instance_fails_that_instance_only(api):
    odd, _ = launch({"Backup": "Yes"})
    _, good = launch({"Backup": "Yes"})

    def oddity(response):  # an EBS mapping without a VolumeId: our code's KeyError
        for reservation in response["Reservations"]:
            for instance in reservation["Instances"]:
                if instance["InstanceId"] == odd:
                    instance["BlockDeviceMappings"] = [{"DeviceName": "/dev/sdz", "Ebs": {}}]
        return response

    api.after["DescribeInstances"] = oddity
    with pytest.raises(creator.JobFailed) as failed:
        creator.run({}, None, now=NOW)
    (failure,) = failed.value.summary["failures"]
    assert failure["id"] == odd and "unexpected KeyError" in failure["error"]
    assert volume_counts() == Counter({good["/dev/sda1"]: 1})


def copier_fleet(n, dests=f"{DEST},{DEST2}"):
    return [
        make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31", "Copy_Dest": dests})
        for _ in range(n)
    ]


def test_copier_one_unreachable_destination_stops_no_other(api, capsys):
    sources = copier_fleet(3)
    api.network(unreachable, when=lambda p, region: region == DEST2)
    with pytest.raises(copier.JobFailed) as failed:
        copier.run({}, None, now=NOW)
    copies = Counter(t["Source_SnapshotId"] for t in snapshots(DEST).values())
    assert copies == Counter({s: 1 for s in sources})
    (failure,) = failed.value.summary["failures"]
    assert (
        failure["id"] == DEST2
        and "cannot list copies there: EndpointConnectionError" in (failure["error"])
    )
    assert f"ec2.{DEST2}.amazonaws.com" in failure["error"]
    line = summary_line(capsys)
    assert (line["SnapshotsCopied"], line["Failures"]) == (3, 1)


@pytest.mark.parametrize("error", [timeout, garbled])
def test_copier_one_failed_copy_call_fails_that_copy_only(api, error):
    sources = copier_fleet(12, dests=DEST)
    bad = sources[7]
    api.network(error, "CopySnapshot", when=lambda p, r: p["SourceSnapshotId"] == bad)
    with pytest.raises(copier.JobFailed) as failed:
        copier.run({}, None, now=NOW)
    copies = Counter(t["Source_SnapshotId"] for t in snapshots(DEST).values())
    assert copies == Counter({s: 1 for s in sources if s != bad})
    (failure,) = failed.value.summary["failures"]
    assert (failure["id"], failure["dest_region"]) == (bad, DEST)
    assert failure["error"].startswith(("ReadTimeoutError", "ResponseParserError"))


def test_copier_an_unreadable_source_listing_ends_the_run_with_its_summary(api, capsys):
    copier_fleet(2)
    api.network(timeout, "DescribeSnapshots", when=lambda p, region: region == REGION)
    with pytest.raises(copier.JobFailed, match="ReadTimeoutError"):
        copier.run({}, None, now=NOW)
    assert snapshots(DEST) == {} and snapshots(DEST2) == {}
    assert summary_line(capsys)["Failures"] == 1


def test_manager_a_timeout_on_one_delete_fails_that_snapshot_only(api, capsys):
    due = [make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"}) for _ in range(6)]
    bad = due[2]
    api.network(timeout, "DeleteSnapshot", when=lambda p, r: p["SnapshotId"] == bad)
    with pytest.raises(manager.JobFailed) as failed:
        manager.run({}, None, now=NOW)
    assert set(snapshots()) == {bad}
    (failure,) = failed.value.summary["failures"]
    assert failure["id"] == bad and failure["error"].startswith("ReadTimeoutError")
    line = summary_line(capsys)
    assert (line["SnapshotsDeleted"], line["Failures"]) == (5, 1)


def test_manager_an_unreachable_destination_costs_its_own_copies_check_only(api, capsys):
    launch({"Backup": "Yes", "Copy_Dest": DEST})
    _, stale = launch({"Backup": "Yes"})  # no snapshot at all: unprotected, destination or not
    make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31", "Copy_Dest": DEST})
    due = make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"})
    api.network(unreachable, when=lambda p, region: region == DEST)
    with pytest.raises(manager.JobFailed) as failed:
        manager.run({}, None, now=datetime.now(UTC) + timedelta(days=2))
    (failure,) = failed.value.summary["failures"]
    assert (
        failure["id"] == DEST
        and "copies there not checked: EndpointConnectionError" in (failure["error"])
    )
    api.outages.clear()
    assert due not in snapshots()  # the deletes go on
    unprotected = {u["volume_id"] for u in failed.value.summary["unprotected"]}
    assert stale["/dev/sda1"] in unprotected  # and the rest of the check still reports
    assert summary_line(capsys)["UnprotectedVolumes"] == 2


def test_manager_an_unreadable_listing_ends_the_run_with_its_summary_and_metrics(api, capsys):
    keep = make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"})
    api.network(unreachable, "DescribeSnapshots")
    with pytest.raises(manager.JobFailed, match="the run stopped: EndpointConnectionError"):
        manager.run({}, None, now=NOW)
    api.outages.clear()
    assert keep in snapshots()
    line = summary_line(capsys)
    assert (line["SnapshotsDeleted"], line["Failures"]) == (0, 1)


def test_manager_a_source_region_down_keeps_the_due_copies_it_cannot_check(api):
    """Kept while within LAST_COPY_GRACE_DAYS of DeleteOn; after that, nothing is kept
    forever for want of a look at the source region."""
    primary = make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-20"})

    def copy(delete_on):
        tags = {
            "Type": "Automated",
            "DeleteOn": delete_on,
            "Source_SnapshotId": primary,
            "Source_Region": REGION,
        }
        return make_snapshot(tags, region=DEST)

    recent = [copy("2026-11-20"), copy("2026-11-20")]
    copy("2026-11-01")  # 25 days past its DeleteOn: over the 14 days of grace
    api.network(unreachable, when=lambda p, region: region == REGION)
    result = manager.run({}, None, region=DEST, now=NOW)
    api.outages.clear()
    assert set(snapshots(DEST)) == set(recent)
    (warning,) = result["warnings"]
    assert warning["id"] == REGION and "2 kept for now, 1 deleted" in warning["reason"]


@pytest.mark.parametrize("region", ["us_east_1", "us-east-1 ", "mars-north-9"])
def test_manager_a_copy_naming_no_region_costs_only_that_copy(api, region):
    odd = make_snapshot(
        {
            "Type": "Automated",
            "DeleteOn": "2026-11-20",
            "Source_SnapshotId": "snap-0123abcd",
            "Source_Region": region,
        },
        region=DEST,
    )
    due = [
        make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"}, region=DEST)
        for _ in range(3)
    ]
    result = manager.run({}, None, region=DEST, now=NOW)
    assert set(snapshots(DEST)) == {odd}  # kept, within its grace; the others go on
    assert result["failures"] == [] and len(due) == 3
    assert any(w["id"] == region for w in result["warnings"])


# ---- a timeout too short to do anything ---------------------------------------------------


@pytest.mark.parametrize("job", [creator, copier, manager], ids=lambda j: j.JOB)
def test_a_three_second_timeout_fails_at_once_naming_it(api, job, capsys):
    launch({"Backup": "Yes", "Copy_Dest": DEST})
    api.calls.clear()
    ctx = Context(api, job.JOB, start_ms=3_000)
    with pytest.raises(job.JobFailed, match="timeout is too short") as failed:
        job.run({}, ctx, now=NOW)
    (failure,) = failed.value.summary["failures"]
    assert failure["id"] == ctx.invoked_function_arn
    assert (
        "started with 3 s" in failure["error"]
        and f"at least {job.MIN_START_S} s" in (failure["error"])
    )
    assert api.calls == []  # nothing was tried
    assert summary_line(capsys)["Failures"] == 1  # the Failures alarm fires, and Errors


# ---- the time budget stops only what botocore would retry --------------------------------


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("InvalidVolume.NotFound", "failed"),
        ("UnauthorizedOperation", "failed"),
        ("RequestLimitExceeded", "not retried"),
    ],
)
def test_near_the_end_a_real_error_keeps_its_code_and_only_a_retry_is_stopped(api, code, outcome):
    fleet(1, devices=("/dev/sda1",))
    api.stub("Invoke", {"StatusCode": 202})
    api.fail("CreateSnapshot", code)
    # The listing brings the clock to 60 s (STOP_MARGIN_S: a snapshot may still start); the
    # first CreateSnapshot answers at 40 s, under the time a retry needs (ATTEMPT_S +
    # BACKOFF_CAP_S = 47 s).
    ctx = Context(api, "creator", start_ms=160_000, per_attempt_ms=20_000)
    failed, _ = run_watching_the_clock(api, ctx, creator, {"id": "e"})
    if outcome == "failed":
        (failure,) = failed.summary["failures"]
        assert failure["error"].startswith(f"{code}: ") and "Lambda time" not in failure["error"]
    else:
        assert "before any progress" in str(failed)  # not retried: no time for its backoff
    assert len(api.ops("CreateSnapshot")) == 1
