"""`--state DIR`: a fleet persisted compactly, and restarted from it.

    DIR/fleet.json          the population (meters, seed, drift), shard, start, the fleet's
                            simulated time at the last checkpoint, feeders down
    DIR/meters/<index>.bfm  every touched meter, packed (fleet.meter: its NVM pages, clock
                            setting, DLMS counters; a few KB)
    DIR/lock                held by the running fleet (one process per state directory)

Never-touched meters are not stored: the population draws them again from the seed.

Every file is written whole to a temporary name and renamed over the old one (the discipline of
hil/emulator/state.py), so a process killed mid-write leaves the old or the new file, never a
torn one. A meter is written before its answer leaves whenever a request changed it (fleet.core
`_save_acknowledged`), flushed to the disk when a command changed it (a token, a relay or
clock write) or its DLMS counter reservation moved; meters advanced by timers are written at
checkpoints and when parked. So a killed fleet loses no acknowledged token or counter: after a
restart such a meter boots from its NVM at the instant it was saved (a reset, POWER_UP logged)
and the firmware steps it on; a parked meter resumes where it rested.
"""
import json
import os

from fleet.meter import PackError, unpack
from hil.emulator.state import lock_state_dir

FORMAT = 1
FLEET_FILE = "fleet.json"
METERS_DIR = "meters"
SUFFIX = ".bfm"


class StateError(Exception):
    """The state directory cannot be used as asked (the message says why)."""


def write_atomic(path, data, sync=False):
    """Write `data` (bytes) to path via a temporary file and a rename; `sync` also flushes
    the file and the directory entry to the disk."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FleetState:
    """A fleet's state directory, held by this process."""

    def __init__(self, state_dir, params):
        os.makedirs(os.path.join(state_dir, METERS_DIR), exist_ok=True)
        self.dir = state_dir
        self.lock = lock_state_dir(state_dir)
        self.params = dict(params)
        self.saved = None
        try:
            self.saved = self._read_fleet()
        except BaseException:
            self.close()
            raise
        if self.saved is not None:
            for k, v in self.params.items():
                if k in self.saved and self.saved[k] != v:
                    self.close()
                    raise StateError(
                        "%s holds a fleet with %s = %r, not %r: use the same population "
                        "options, or another --state directory" % (state_dir, k,
                                                                   self.saved[k], v))
        self.writes = 0

    def _read_fleet(self):
        path = os.path.join(self.dir, FLEET_FILE)
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise StateError("%s is damaged (%s)" % (path, e)) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise StateError("%s: not a bijli fleet state (format %r)"
                             % (path, doc.get("format") if isinstance(doc, dict) else None))
        return doc

    def _meter_path(self, index):
        return os.path.join(self.dir, METERS_DIR, "%d%s" % (index, SUFFIX))

    def save_meter(self, index, blob, sync=False):
        """Store one packed meter (atomic; `sync`: flushed to the disk)."""
        write_atomic(self._meter_path(index), blob, sync)
        self.writes += 1

    def load_meters(self):
        """{index: packed meter} of every stored meter (each checked; StateError names a
        damaged one: a meter is never silently replaced by a new one)."""
        out = {}
        d = os.path.join(self.dir, METERS_DIR)
        for name in os.listdir(d):
            if not name.endswith(SUFFIX):
                continue  # a leftover .tmp of a write cut short: the old file stands
            try:
                index = int(name[:-len(SUFFIX)])
            except ValueError:
                continue
            with open(os.path.join(d, name), "rb") as f:
                blob = f.read()
            try:
                unpack(blob)
            except PackError as e:
                raise StateError("%s: %s (restore it, or remove it to start that meter anew)"
                                 % (os.path.join(d, name), e)) from None
            out[index] = blob
        return out

    def save_fleet(self, doc, sync=True):
        """Store the fleet document (with the population parameters)."""
        full = dict(self.params)
        full.update(doc)
        full["format"] = FORMAT
        write_atomic(os.path.join(self.dir, FLEET_FILE),
                     json.dumps(full, sort_keys=True, indent=1).encode("utf-8"), sync)

    def close(self):
        """Release the directory."""
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None
