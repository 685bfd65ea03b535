"""Where moto falls short of EC2 for what the jobs call, emulated as the EC2 API reference
states it. ``install()`` patches moto in this process; the tests, the demo and the
benchmarks call it before they start moto.
"""

from moto.ec2.models.elastic_block_store import Volume

_moto_filter_value = Volume.get_filter_value


def _volume_filter_value(self, filter_name, method_name=None):
    # EC2 API reference, DescribeVolumes, Filters: "multi-attach-enabled - Indicates whether
    # the volume is enabled for Multi-Attach (true | false)". moto 5 raises
    # FilterNotImplementedError for it.
    if filter_name == "multi-attach-enabled":
        return str(bool(self.multi_attach_enabled)).lower()
    return _moto_filter_value(self, filter_name, method_name)


def install():
    Volume.get_filter_value = _volume_filter_value
