"""The emulated meter's state directory: which files it holds and how each is read and written.

    meter.nvm   the NVM image (the firmware's storage; owner-only, it holds the token keys)
    clock.txt   the simulated clock, Unix seconds (saved every second of real time)
    dlms.txt    our DLMS invocation counter bound, the clients' counters, association lockouts
    lock        held with an exclusive flock while a meter runs on the directory

A damaged file is refused with an error naming it, never read as "nothing saved".
"""
import os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock on the state directory
    fcntl = None

from firmware.hal.nvm import FileNVM
from firmware.storage import StoreError
from firmware.timeutil import TIME_MAX, TIME_MIN

NVM_FILE = "meter.nvm"
LOCK_FILE = "lock"
CLOCK_FILE = "clock.txt"
DLMS_FILE = "dlms.txt"


def lock_state_dir(state_dir):
    """Hold the state directory for this process (an fd with an exclusive flock): two
    emulators on one NVM image would interleave their writes (a token credited by one lost by
    the other, its anti-replay entry with it). OSError if another meter holds it."""
    fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OSError("state directory %s is in use by another running meter" % state_dir) \
            from None
    return fd


class LockedFileNVM(FileNVM):
    """The NVM image of a state directory, holding the directory's lock until closed."""

    def __init__(self, path, size, lock_fd):
        try:
            FileNVM.__init__(self, path, size)
        except BaseException:
            os.close(lock_fd)
            raise
        self._lock_fd = lock_fd

    def close(self):
        """Close the image and release the state directory."""
        try:
            FileNVM.close(self)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def check_nvm_image(path):
    """True if a meter image exists at path, False if none; StoreError for an empty file
    (starting a new meter over it would pass a lost meter off as a new one)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return False
    if size == 0:
        raise StoreError("%s is empty (0 bytes): not a meter image" % os.path.basename(path))
    return True


def read_clock_file(path):
    """The simulated Unix second saved in a clock file; None if there is no file; ValueError
    naming the file if it holds anything else (a damaged clock is never silently ignored)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
    except FileNotFoundError:
        return None
    try:
        t = int(raw.decode("ascii").strip())
    except ValueError:  # also UnicodeDecodeError
        t = -1
    if not TIME_MIN <= t <= TIME_MAX:
        raise ValueError("clock file %s is damaged (%r): it should hold the simulated time in "
                         "Unix seconds (2000 .. 2099); fix it, or remove it to start from the "
                         "current time" % (path, raw[:20]))
    return t


def write_clock_file(path, t):
    """Save the simulated Unix second `t` to a clock file atomically (temp file + rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % t)
    os.replace(tmp, path)


def read_dlms_state(state_dir):
    """(our invocation counter, {client title: last counter}, association lockouts or None)
    saved in state_dir; (0, {}, None) when there is no file (a meter that never served DLMS).
    StoreError naming the file when it is damaged: read as 0 and none, our counter would
    reuse GCM IVs under the same keys and clients' replayed requests would be accepted."""
    ic = None
    counters = {}
    lockouts = None
    if not state_dir:
        return 0, counters, lockouts
    path = os.path.join(state_dir, DLMS_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return 0, counters, lockouts
    try:
        for line in raw.decode("ascii").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "ic" and ic is None:
                ic = _u32(parts[1])
            elif len(parts) == 3 and parts[0] == "client" and len(parts[1]) == 16:
                counters[bytes.fromhex(parts[1])] = _u32(parts[2])
            elif len(parts) == 2 and parts[0] == "lockouts":
                lockouts = bytes.fromhex(parts[1])
            else:
                raise ValueError(line[:40])
        if ic is None:
            raise ValueError("no 'ic' line")
    except ValueError as e:  # also UnicodeDecodeError
        raise StoreError("%s is damaged (%s): it holds the meter's invocation counter bound and "
                         "its clients' counters, which must never go back; restore it, or move "
                         "the state away for a new meter" % (DLMS_FILE, e)) from None
    return ic, counters, lockouts


def _u32(text):
    n = int(text)
    if not 0 <= n <= 0xFFFFFFFF:
        raise ValueError("%s is not a 32-bit counter" % text)
    return n


def write_dlms_state(state_dir, server, ic=None, sync=False):
    """Write our counter bound (`ic`, default the one in use) and the client counters
    atomically; `sync` also flushes it to the disk (a new reservation survives a power cut)."""
    path = os.path.join(state_dir, DLMS_FILE)
    lines = ["ic %d" % (server.invocation_counter if ic is None else ic)]
    for title, last in sorted(server.counters.last.items()):
        lines.append("client %s %d" % (title.hex(), last))
    lines.append("lockouts %s" % server.throttle.dump().hex())  # failed associations per SAP
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
