"""Where moto falls short of EC2 for what the jobs call, emulated as the EC2 API reference
states it. ``install()`` patches moto in this process; the tests, the demo and the
benchmarks call it before they start moto.
"""

from moto.ec2.models.elastic_block_store import EBSBackend, Volume

_moto_filter_value = Volume.get_filter_value
_moto_create_snapshots = EBSBackend.create_snapshots


def _volume_filter_value(self, filter_name, method_name=None):
    # EC2 API reference, DescribeVolumes, Filters: "multi-attach-enabled - Indicates whether
    # the volume is enabled for Multi-Attach (true | false)". moto 5 raises
    # FilterNotImplementedError for it.
    if filter_name == "multi-attach-enabled":
        return str(bool(self.multi_attach_enabled)).lower()
    return _moto_filter_value(self, filter_name, method_name)


def _create_snapshots(self, instance_spec, description, tags):
    # EC2 API reference, CreateSnapshots, InstanceSpecification.ExcludeDataVolumeIds: "The
    # IDs of the data (non-root) volumes to exclude from the multi-volume snapshot set".
    # moto 5 snapshots every volume; the ones excluded are deleted again here, unseen.
    excluded = instance_spec.get("ExcludeDataVolumeIds") or []
    excluded = [excluded] if isinstance(excluded, str) else list(excluded)
    made = _moto_create_snapshots(self, instance_spec, description, tags)
    for snapshot in [s for s in made if s.volume.id in excluded]:
        del self.snapshots[snapshot.id]
    return [s for s in made if s.volume.id not in excluded]


def install():
    Volume.get_filter_value = _volume_filter_value
    EBSBackend.create_snapshots = _create_snapshots
