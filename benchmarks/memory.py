"""Memory of a process, as Linux counts it in /proc/<pid>/status. Standard library only: the cold-start
program imports it, and whatever it imports counts in that program's start-up time."""
from __future__ import annotations


def status_mb(field: str, pid: int | str = "self") -> float:
    """A memory line of /proc/<pid>/status in MB: VmRSS (resident now) or VmHWM (the peak of VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:")) / 1024


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory now, through psutil where it is installed (it also serves off Linux)."""
    try:
        import psutil
    except ImportError:
        return status_mb("VmRSS", pid)
    return psutil.Process(None if pid == "self" else pid).memory_info().rss / 2**20


def peak_rss_mb(pid: int | str = "self") -> float:
    return status_mb("VmHWM", pid)
