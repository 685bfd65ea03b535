"""EC2 as the jobs meet it at scale: moto, behind EC2's token buckets and a per-call latency.

Installed through botocore's ``before-send`` hook (moto's BotocoreStubber, wrapped), so
the jobs run unchanged. Each account-and-region bucket refills continuously; a call that
finds its bucket empty is answered 503 RequestLimitExceeded, as EC2 does, and costs no
token. Sizes and rates are EC2's ("Request throttling" in the EC2 developer guide).
moto's DescribeSnapshots and DescribeVolumes are also made to page like EC2's, and its tag
lookup is indexed, so that moto's own costs stay out of what is measured.
"""

import re
import threading
import time
from collections import Counter
from contextlib import contextmanager

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.core.responses import ActionResult
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

BUCKETS = {  # name: (size, refill per second)
    "snapshots": (100, 5),
    "tags": (100, 10),
    "mutating": (50, 5),
    "describe": (100, 20),
    "describe_unpaginated": (50, 10),
}
SNAPSHOT_CALLS = {"CreateSnapshot", "CreateSnapshots", "DeleteSnapshot", "ModifySnapshotAttribute"}
BIG_DESCRIBES = {"DescribeInstances", "DescribeSnapshots", "DescribeVolumes"}


def bucket_of(operation, body):
    if operation in SNAPSHOT_CALLS:
        return "snapshots"
    if operation in ("CreateTags", "DeleteTags"):
        return "tags"
    if operation.startswith("Describe"):
        paged = "MaxResults=" in body or "Filter." in body or "Id." in body
        return "describe" if paged or operation not in BIG_DESCRIBES else "describe_unpaginated"
    return "mutating"


THROTTLED = (
    b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
    b"<Message>Request limit exceeded.</Message></Error></Errors>"
    b"<RequestID>ec2sim</RequestID></Response>"
)


class SimulatedEC2:
    """Counts every call by operation, and every throttled one."""

    def __init__(self, latency=0.05, limits=True, scale=1.0):
        self.latency, self.limits, self.scale = latency, limits, scale
        self.calls, self.throttled = Counter(), Counter()
        self.moto_cpu = 0.0  # CPU seconds spent answering inside moto: not the job's
        self.listings = {}  # a listing's filtered, sorted items, kept while it is paged
        self._lock = threading.Lock()
        self._buckets = {}  # (region, name) -> [tokens, time of last refill]

    def _take(self, region, name):
        size, rate = BUCKETS[name]
        rate *= self.scale  # a scaled clock: EC2 refills `scale` times faster
        with self._lock:
            now = time.monotonic()
            bucket = self._buckets.setdefault((region, name), [size, now])
            bucket[0] = min(size, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if bucket[0] < 1:
                return False
            bucket[0] -= 1
            return True

    def answer(self, event_name, request):
        """None to let moto answer; a throttling response when the bucket is empty."""
        match = re.match(r"https?://ec2\.([a-z0-9-]+)\.", request.url)
        if not match:
            return None
        operation = event_name.rsplit(".", 1)[-1]
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        time.sleep(self.latency)
        with self._lock:
            self.calls[operation] += 1
        if not self.limits or self._take(match.group(1), bucket_of(operation, body)):
            return None
        with self._lock:
            self.throttled[operation] += 1
        return AWSResponse(request.url, 503, {}, MockRawResponse(THROTTLED))


def _paged(key, id_attr, backend_call, store, listings):
    """A moto response method that pages by id with MaxResults/NextToken, like EC2. A
    listing is filtered and sorted once, at its first page (moto would filter every item of
    the region again for each page); items deleted since are left out of later pages."""

    def describe(self):
        filters = self._filters_from_querystring()
        token, limit = self._get_param("NextToken"), int(self._get_param("MaxResults") or 0)
        asked = sorted((k, v) for k, v in self.querystring.items() if k != "NextToken")
        query = repr((self.current_account, self.region, asked))
        if not token or query not in listings:
            found = backend_call(self, filters)
            listings[query] = sorted(found, key=lambda item: getattr(item, id_attr))
        alive = getattr(self.ec2_backend, store)
        items = [i for i in listings[query] if getattr(i, id_attr) in alive]
        if token:
            items = [i for i in items if getattr(i, id_attr) > token]
        page = items[:limit] if limit else items
        result = {key: page}
        if limit and len(items) > len(page):
            result["NextToken"] = getattr(page[-1], id_attr)
        return ActionResult(result)

    return describe


def _tags_of(resource):
    """moto's get_tags, by direct lookup: moto scans every tag of the account for each
    resource, which makes listing thousands of snapshots quadratic (a moto cost, not EC2's)."""
    if not resource.id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource.id), "")
    return [
        {"resource_id": resource.id, "key": k, "value": v, "resource_type": kind}
        for k, v in resource.ec2_backend.tags.get(resource.id, {}).items()
    ]


@contextmanager
def simulated_ec2(latency=0.05, limits=True, scale=1.0):
    """Inside: every EC2 call meets the latency and (with ``limits``) EC2's buckets, refilled
    ``scale`` times faster than EC2's (a scaled clock). Use within mock_aws()."""
    sim = SimulatedEC2(latency, limits, scale)
    original_call = BotocoreStubber.__call__
    originals = (ElasticBlockStore.describe_snapshots, ElasticBlockStore.describe_volumes)

    def before_send(stubber, event_name, request, **kwargs):
        if stubber.enabled:
            response = sim.answer(event_name, request)
            if response is not None:
                return response
        started = time.thread_time()
        try:
            return original_call(stubber, event_name, request, **kwargs)
        finally:
            with sim._lock:
                sim.moto_cpu += time.thread_time() - started

    BotocoreStubber.__call__ = before_send
    original_tags, TaggedEC2Resource.get_tags = TaggedEC2Resource.get_tags, _tags_of
    ElasticBlockStore.describe_snapshots = _paged(
        "Snapshots",
        "id",
        lambda self, f: self.ec2_backend.describe_snapshots(
            snapshot_ids=self._get_param("SnapshotIds", []), filters=f
        ),
        "snapshots",
        sim.listings,
    )
    ElasticBlockStore.describe_volumes = _paged(
        "Volumes",
        "id",
        lambda self, f: self.ec2_backend.describe_volumes(
            volume_ids=self._get_param("VolumeIds", []), filters=f
        ),
        "volumes",
        sim.listings,
    )
    try:
        yield sim
    finally:
        BotocoreStubber.__call__ = original_call
        TaggedEC2Resource.get_tags = original_tags
        ElasticBlockStore.describe_snapshots, ElasticBlockStore.describe_volumes = originals
