"""EC2 as the jobs meet it at scale: moto, behind EC2's token buckets and a per-call latency.

Installed through botocore's ``before-send`` hook (moto's BotocoreStubber, wrapped), so
the jobs run unchanged. Each account-and-region bucket refills continuously; a call that
finds its bucket empty is answered 503 RequestLimitExceeded, as EC2 does, and costs no
token. Sizes and rates are EC2's ("Request throttling" in the EC2 developer guide).
moto's DescribeSnapshots, DescribeVolumes and DescribeInstances are also made to page like
EC2's (moto pages DescribeInstances by reservation, however many instances each holds; EC2's
MaxResults counts items), and its tag lookup is indexed, so that moto's own costs stay out
of what is measured.

With a VirtualClock (``simulated_ec2(clock=...)``), the latency and the buckets' refill are
in the clock's time, and the CPU spent answering inside moto (which stands in for EC2's
servers, whose time the latency models) is left out of the time the jobs see.
"""

import copy
import heapq
import itertools
import re
import threading
import time
import types
from collections import Counter, deque
from contextlib import contextmanager

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.core.responses import ActionResult
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses import EC2Response
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses.instances import InstanceResponse
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

    def __init__(self, latency=0.05, limits=True, scale=1.0, clock=None, invisible_s=0.0):
        self.latency, self.limits, self.scale = latency, limits, scale
        self.clock = clock or REAL_TIME
        # EC2's Describe calls are eventually consistent (EC2 API reference, "Eventual
        # consistency"): a snapshot made less than this long ago is not listed yet (by
        # filters; by its id it is).
        self.invisible_s, self.born = invisible_s, {}  # born: snapshot id -> clock time
        self.calls, self.throttled = Counter(), Counter()
        self.moto_cpu = 0.0  # CPU seconds spent answering inside moto: not the job's
        self.listings = {}  # a listing's filtered, sorted items, kept while it is paged
        self._lock = threading.Lock()
        self._buckets = {}  # (region, name) -> [tokens, time of last refill]

    def _take(self, region, name):
        size, rate = BUCKETS[name]
        rate *= self.scale  # a scaled clock: EC2 refills `scale` times faster
        with self._lock:
            now = self.clock.monotonic()
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
        self.clock.sleep(self.latency)
        with self._lock:
            self.calls[operation] += 1
        if not self.limits or self._take(match.group(1), bucket_of(operation, body)):
            return None
        with self._lock:
            self.throttled[operation] += 1
        return AWSResponse(request.url, 503, {}, MockRawResponse(THROTTLED))


def _visible(sim, snapshots, by_id):
    """Snapshots a listing shows now: not those made less than sim.invisible_s ago."""
    if by_id or not sim.invisible_s:
        return snapshots
    now = sim.clock.monotonic()
    return [s for s in snapshots if sim.born.get(s.id, -1e18) <= now - sim.invisible_s]


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


def _paged_instances(moto_describe):
    """moto's DescribeInstances, paged by instance (MaxResults items a page, as EC2 pages it)
    rather than by reservation: a page holds each reservation's share of its instances.
    With explicit instance ids (no MaxResults allowed), moto's own answer."""

    def describe(self):
        if self._get_param("InstanceIds", []):
            return moto_describe(self)
        token, limit = self._get_param("NextToken"), int(self._get_param("MaxResults") or 0)
        filters = self._filters_from_querystring()
        reservations = self.ec2_backend.describe_instances(filters=filters)
        items = sorted((i.id, r, i) for r in reservations for i in r.instances)
        if token:
            items = [x for x in items if x[0] > token]
        page, shares = items[:limit] if limit else items, {}
        for _, reservation, instance in page:
            if reservation.id not in shares:
                shares[reservation.id] = copy.copy(reservation)
                shares[reservation.id].instances = []
            shares[reservation.id].instances.append(instance)
        result = {"Reservations": list(shares.values())}
        if limit and len(items) > len(page):
            result["NextToken"] = page[-1][0]
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
def simulated_ec2(latency=0.05, limits=True, scale=1.0, clock=None, invisible_s=0.0):
    """Inside: every EC2 call meets the latency and (with ``limits``) EC2's buckets, refilled
    ``scale`` times faster than EC2's (a scaled clock), in real time or in ``clock``'s (a
    VirtualClock, which then does not count moto's CPU); a snapshot is listed only
    ``invisible_s`` (in the clock's time) after it was made. Use within mock_aws()."""
    sim = SimulatedEC2(latency, limits, scale, clock, invisible_s)
    made = (EBSBackend.create_snapshot, EBSBackend.create_snapshots)

    def create_snapshot(backend, *args, **kwargs):
        snapshot = made[0](backend, *args, **kwargs)
        sim.born[snapshot.id] = sim.clock.monotonic()
        return snapshot

    def create_snapshots(backend, *args, **kwargs):
        snapshots = made[1](backend, *args, **kwargs)
        sim.born |= {s.id: sim.clock.monotonic() for s in snapshots}
        return snapshots

    EBSBackend.create_snapshot, EBSBackend.create_snapshots = create_snapshot, create_snapshots
    virtual = clock if isinstance(clock, VirtualClock) else None
    original_call = BotocoreStubber.__call__
    originals = (ElasticBlockStore.describe_snapshots, ElasticBlockStore.describe_volumes)
    original_instances = InstanceResponse.describe_instances
    InstanceResponse.describe_instances = _paged_instances(original_instances)

    def before_send(stubber, event_name, request, **kwargs):
        if stubber.enabled:
            response = sim.answer(event_name, request)
            if response is not None:
                return response
        if virtual:
            virtual.charge()  # the job's CPU up to here; moto's from here is not
        started = time.thread_time()
        try:
            return original_call(stubber, event_name, request, **kwargs)
        finally:
            with sim._lock:
                sim.moto_cpu += time.thread_time() - started
            if virtual:
                virtual.discard()

    BotocoreStubber.__call__ = before_send
    original_tags, TaggedEC2Resource.get_tags = TaggedEC2Resource.get_tags, _tags_of
    ElasticBlockStore.describe_snapshots = _paged(
        "Snapshots",
        "id",
        lambda self, f: _visible(
            sim,
            self.ec2_backend.describe_snapshots(
                snapshot_ids=self._get_param("SnapshotIds", []), filters=f
            ),
            self._get_param("SnapshotIds", []),
        ),
        "snapshots",
        sim.listings,
    )
    # moto_gaps installs its own DescribeSnapshots on EC2Response, over moto's: page that
    installed = EC2Response.__dict__.get("describe_snapshots")
    if installed:
        EC2Response.describe_snapshots = _paged(
            "Snapshots",
            "id",
            lambda self, f: _visible(
                sim, installed(self).result["Snapshots"], self._get_param("SnapshotIds", [])
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
        InstanceResponse.describe_instances = original_instances
        EBSBackend.create_snapshot, EBSBackend.create_snapshots = made
        if installed:
            EC2Response.describe_snapshots = installed


# ---- answers rendered ahead: a job's memory apart from the simulator's ----

READS = ("Describe", "Get", "List")  # operations that change nothing: recorded, replayed
EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"


class Unrecorded(RuntimeError):
    """A replayed run asked for an answer the recorded run never asked for."""


class Recording:
    """Every read's answer of one run, as bytes, keyed by its URL and request body (which
    holds the operation, its parameters and the page's NextToken); and the writes asked."""

    def __init__(self):
        self.answers = {}  # (url, body): (status, headers, body bytes)
        self.reads, self.writes, self.missed = Counter(), Counter(), Counter()

    @staticmethod
    def key(request):
        body = request.body or b""
        return request.url, body.encode() if isinstance(body, str) else bytes(body)

    def size(self):
        """Bytes of the recorded answers' bodies."""
        return sum(len(body) for _, _, body in self.answers.values())


def canned(request, operation):
    """A write's answer: accepted, nothing to return (as DeleteSnapshot's or CreateTags')."""
    body = (
        f'<{operation}Response xmlns="{EC2_XMLNS}"><requestId>ec2sim</requestId>'
        f"<return>true</return></{operation}Response>"
    )
    return AWSResponse(request.url, 200, {}, MockRawResponse(body.encode()))


@contextmanager
def recorded(recording):
    """Inside simulated_ec2 (so answers page as EC2's do): each read's answer is kept in
    ``recording`` as moto renders it; each write is answered canned and never reaches moto,
    so that moto's region is left as it was (a replay then asks the same reads: a sweep's
    later pages list snapshots after the last one listed, never those it deleted)."""
    inner = BotocoreStubber.__call__

    def before_send(stubber, event_name, request, **kwargs):
        operation = event_name.rsplit(".", 1)[-1]
        if not stubber.enabled:
            return inner(stubber, event_name, request, **kwargs)
        if not operation.startswith(READS):
            recording.writes[operation] += 1
            return canned(request, operation)
        response = inner(stubber, event_name, request, **kwargs)
        if response is not None:
            recording.reads[operation] += 1
            content = response.content  # read once: kept, and botocore reads it again
            recording.answers[recording.key(request)] = (
                response.status_code,
                dict(response.headers),
                content,
            )
        return response

    BotocoreStubber.__call__ = before_send
    try:
        yield recording
    finally:
        BotocoreStubber.__call__ = inner


@contextmanager
def replayed(recording, edge=None):
    """Every call answered from ``recording`` (reads) or canned (writes): moto, and
    simulated_ec2's paging, never run, so that tracemalloc sees the job alone, and botocore
    reading each answer's bytes as it would read AWS's. A read not recorded raises
    Unrecorded (counted in ``recording.missed``). ``edge()``, when given, is called before
    each answer (bench's look at what is held between pages). Use within mock_aws()."""
    original = BotocoreStubber.__call__

    def before_send(stubber, event_name, request, **kwargs):
        operation = event_name.rsplit(".", 1)[-1]
        if not stubber.enabled:
            return original(stubber, event_name, request, **kwargs)
        if edge:
            edge()
        if not operation.startswith(READS):
            return canned(request, operation)
        found = recording.answers.get(recording.key(request))
        if found is None:
            recording.missed[operation] += 1
            raise Unrecorded(f"{operation} {request.url}: not asked in the recorded run")
        status, headers, body = found
        return AWSResponse(request.url, status, dict(headers), MockRawResponse(body))

    BotocoreStubber.__call__ = before_send
    try:
        yield recording
    finally:
        BotocoreStubber.__call__ = original


# ---- a virtual clock for the jobs ----

REAL_TIME = types.SimpleNamespace(monotonic=time.monotonic, sleep=time.sleep)


class Stalled(RuntimeError):
    """No thread under the clock can go on (a deadlock of the simulation's, not EC2's)."""


class VirtualClock:
    """Time as a Lambda running the jobs would see it, independent of this machine's load.

    The threads under the clock (the one that made it, and those ``spawn`` starts) run one
    at a time, each until it sleeps, blocks on one of the clock's semaphores or pools, or
    ends; then the next ready thread runs, or, when none is, the clock jumps to the earliest
    wake-up. So time passes by the sleeps (the jobs' pacer, the latency of each AWS call,
    botocore's retry back-off) and by the CPU the threads spend, each thread's own CPU
    (``time.thread_time``) added as it goes, at one core, divided by ``cpu_scale`` (on a
    clock scaled by a factor, the CPU is scaled too). CPU spent between ``charge()`` and
    ``discard()`` (inside moto, which stands in for AWS's servers) is not counted.
    """

    WATCHDOG_S = 900  # real seconds a thread may wait for its turn before the run is stuck

    def __init__(self, epoch=0.0, cpu_scale=1.0):
        self.t, self.epoch, self.cpu_scale = 0.0, epoch, cpu_scale
        self.cpu = 0.0  # the CPU seconds counted as time (unscaled)
        self.errors = []  # exceptions that escaped a spawned thread
        self._timers, self._ready, self._seq = [], deque(), itertools.count()
        self._threads = {}  # thread ident -> its _Turn
        self._current = self._turn(threading.get_ident())

    def _turn(self, ident):
        turn = types.SimpleNamespace(go=threading.Event(), mark=time.thread_time())
        self._threads[ident] = turn
        return turn

    # the time module as the jobs see it
    def monotonic(self):
        self.charge()
        return self.t

    def time(self):  # epoch seconds; monotonic() counts from 0 (a float keeps its precision)
        return self.epoch + self.monotonic()

    def sleep(self, seconds):
        me = self._me()
        self.charge()
        heapq.heappush(self._timers, (self.t + max(seconds, 0.0), next(self._seq), me))
        self._switch(me)

    def charge(self):
        """Count the running thread's CPU since its last charge."""
        turn = self._threads.get(threading.get_ident())
        if turn is None:
            return
        now = time.thread_time()
        spent, turn.mark = now - turn.mark, now
        self.cpu += spent
        self.t += spent / self.cpu_scale

    def discard(self):
        """Leave the running thread's CPU since its last charge out of the time."""
        turn = self._threads.get(threading.get_ident())
        if turn is not None:
            turn.mark = time.thread_time()

    # threads, and waiting for each other
    def spawn(self, work):
        """Run work() in a new thread under the clock, ready now; it runs when its turn comes."""

        def body():
            turn = self._turn(threading.get_ident())
            started.set()
            turn.go.wait()
            turn.mark = time.thread_time()
            try:
                work()
            except BaseException as exc:  # kept: bench raises it once the run is over
                self.errors.append(exc)
            finally:
                self.charge()
                del self._threads[threading.get_ident()]
                self._hand_over()

        started = threading.Event()
        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        started.wait()
        self._ready.append(self._threads[thread.ident])

    def block(self, waiting):
        """Wait, in ``waiting`` (a deque), until wake() moves this thread back to ready."""
        me = self._me()
        self.charge()
        waiting.append(me)
        self._switch(me)

    def wake(self, waiting, count=1):
        for _ in range(min(count, len(waiting))):
            self._ready.append(waiting.popleft())

    def _me(self):
        turn = self._threads.get(threading.get_ident())
        if turn is not self._current:
            raise Stalled("a thread not under the clock, or not its turn, used the clock")
        return turn

    def _next(self):
        if self._ready:
            return self._ready.popleft()
        if self._timers:
            when, _, turn = heapq.heappop(self._timers)
            self.t = max(self.t, when)
            return turn
        raise Stalled("every thread under the virtual clock waits for another")

    def _switch(self, me):
        following = self._next()
        if following is me:
            me.mark = time.thread_time()
            return
        me.go.clear()
        self._current = following
        following.go.set()
        if not me.go.wait(self.WATCHDOG_S):
            raise Stalled(f"no turn came back in {self.WATCHDOG_S} s")
        me.mark = time.thread_time()

    def _hand_over(self):
        """A spawned thread ends: the next one runs."""
        try:
            self._current = self._next()
        except Stalled as exc:
            self.errors.append(exc)
            return
        self._current.go.set()


class Semaphore:
    """threading.Semaphore for threads under a VirtualClock (acquire blocks in its time)."""

    def __init__(self, clock, value=1):
        self.clock, self.value, self.waiting = clock, value, deque()

    def acquire(self, blocking=True, timeout=None):
        while self.value <= 0:
            if not blocking:
                return False
            self.clock.block(self.waiting)
        self.value -= 1
        return True

    def release(self, n=1):
        self.value += n
        self.clock.wake(self.waiting, n)

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()


class Pool:
    """concurrent.futures.ThreadPoolExecutor for a VirtualClock: each task a thread under
    the clock; leaving the ``with`` waits for them all. (Its callers bound how many run at
    once themselves, as the jobs' in_parallel does with its semaphore.)"""

    def __init__(self, clock, max_workers=None, **kwargs):
        self.clock, self.pending, self.waiting = clock, 0, deque()

    def submit(self, fn, /, *args, **kwargs):
        self.pending += 1

        def task():
            try:
                fn(*args, **kwargs)
            finally:
                self.pending -= 1
                if not self.pending:
                    self.clock.wake(self.waiting, len(self.waiting))

        self.clock.spawn(task)

    def shutdown(self, wait=True, **kwargs):
        while wait and self.pending:
            self.clock.block(self.waiting)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
