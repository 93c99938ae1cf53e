"""Facts about the running benchmark process that several scripts record."""

from __future__ import annotations

from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux ``VmHWM``), in bytes.

    Read in the process that did the work: a child's ``ru_maxrss`` (from ``wait4``) starts at the RSS its
    parent had when it forked, so it overstates a child forked from a parent that held data.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")
