"""The psutil host collector: sample every second, roll samples into one HostMinute per host and minute."""

from collectors.senders.host.rollup import MinuteRollup, Sample

__all__ = ["MinuteRollup", "Sample"]
