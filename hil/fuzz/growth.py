"""The process-growth oracle: the meter process the harness owns (the pty target's `bijli
meter serve`, the MicroPython unix port, QEMU) must not grow without bound over a run.

`GrowthWatch` samples the resident set size (RSS, Linux /proc/PID/status VmRSS) of the
target's processes (`Target.processes()`) after every case. The first `warmup` cases are
allowed to grow (imports, caches, the heap touched the first time); the RSS after them is the
baseline, and growth beyond `limit_kb` above it is a finding. A new process (a power cycle,
a reset) starts a new baseline. Targets whose meter runs in the harness's own process (the
emulator) or elsewhere (tcp, serial) have no process to watch: the report says so.
"""
DEFAULT_LIMIT_KB = 32 * 1024
WARMUP_CASES = 3


def rss_kb(pid):
    """Resident set size of `pid` in kB, or None (no such process, no /proc)."""
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class GrowthWatch:
    """Watch `processes()` (a callable returning pids) for growth beyond `limit_kb`."""

    def __init__(self, processes, limit_kb=DEFAULT_LIMIT_KB, warmup=WARMUP_CASES, read=rss_kb):
        self.processes = processes
        self.limit_kb = limit_kb
        self.warmup = warmup
        self.read = read
        self.pids = None
        self.cases = 0  # cases seen by the current processes
        self.baseline_kb = None
        self.last_kb = None
        self.peak_growth_kb = 0
        self.samples = 0

    def sample(self):
        """After a case: None, or a text saying how far the processes grew (the finding)."""
        pids = tuple(self.processes() or ())
        if not pids:
            return None
        if pids != self.pids:  # a new process: its own warm-up and baseline
            self.pids, self.cases, self.baseline_kb = pids, 0, None
        sizes = [self.read(p) for p in pids]
        if any(s is None for s in sizes):
            return None
        self.samples += 1
        self.cases += 1
        self.last_kb = sum(sizes)
        if self.cases <= self.warmup:
            self.baseline_kb = self.last_kb
            return None
        growth = self.last_kb - self.baseline_kb
        self.peak_growth_kb = max(self.peak_growth_kb, growth)
        if growth > self.limit_kb:
            return ("RSS %d kB after %d cases, %d kB more than after the warm-up (limit %d kB)"
                    % (self.last_kb, self.cases, growth, self.limit_kb))
        return None

    def summary(self):
        """For the report: what was watched and how it grew (None: nothing to watch)."""
        if self.samples == 0:
            return None
        return {"pids": list(self.pids or ()), "baseline_kb": self.baseline_kb,
                "last_kb": self.last_kb, "peak_growth_kb": self.peak_growth_kb,
                "limit_kb": self.limit_kb, "samples": self.samples}
