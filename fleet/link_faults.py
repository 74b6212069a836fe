"""Link faults of the emulated fleet's network side: what cellular modems, PLC and RF links do
to a head-end's sessions, seeded and reproducible.

- `unreachable`: a share of the meters cannot be reached at all, either `refused` (nothing
  listens on the meter's address; through a concentrator: the unreachable-device answer) or
  `silent` (the connection opens, nothing ever answers). Which meters is a pure function of
  (seed, meter id): the same meters on every run and in every shard.
- `latency_ms` + `jitter_ms`: every answer leaves that late (uniform jitter), in order.
- `bytes_per_s`: a slow serial-like link for a share `slow_share` of the meters (the
  answer's octets take their time on the line).
- `drop_sessions`: a share of the sessions is cut after 1 to 3 requests, in the middle of an
  answer (direct connections: half the answer, then the connection closes; through a
  concentrator: the meter's session is released and the request gets the unreachable-device
  answer).

From the command line (`bijli fleet serve --unreachable 0.02 ...`) or from the `[links]` table
of a scenario file (TOML, docs/fleet.md); command-line values win.
"""
import hashlib
import random
import tomllib

MODES = ("refused", "silent")
FIELDS = {  # name: (type, lowest, highest)
    "unreachable": (float, 0.0, 1.0),
    "unreachable_mode": (str, None, None),
    "latency_ms": (float, 0.0, 600_000.0),
    "jitter_ms": (float, 0.0, 600_000.0),
    "drop_sessions": (float, 0.0, 1.0),
    "bytes_per_s": (float, 1.0, 1e12),
    "slow_share": (float, 0.0, 1.0),
    "seed": (int, 0, 2**63),
}


class FaultConfigError(ValueError):
    """A fault setting or scenario file is unusable (the message names it)."""


def _fraction(seed, meter_id, what):
    """A stable number in [0, 1) for (seed, meter id, what): the same on every run."""
    digest = hashlib.blake2b(("%d|%s|%s" % (seed, what, meter_id)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2.0**64


class LinkFaults:
    """The link faults in force (all off by default). `session(meter_id)` gives one session's
    faults; counters of what happened are kept for the live status."""

    def __init__(self, unreachable=0.0, unreachable_mode="refused", latency_ms=0.0,
                 jitter_ms=0.0, drop_sessions=0.0, bytes_per_s=None, slow_share=1.0, seed=1):
        values = dict(unreachable=unreachable, unreachable_mode=unreachable_mode,
                      latency_ms=latency_ms, jitter_ms=jitter_ms, drop_sessions=drop_sessions,
                      bytes_per_s=bytes_per_s, slow_share=slow_share, seed=seed)
        for name, value in values.items():
            setattr(self, name, _check(name, value))
        self._rng = random.Random(seed)
        self.sessions_dropped = 0
        self.refused = 0
        self.silenced = 0

    @classmethod
    def from_file(cls, path, **overrides):
        """The `[links]` table of a TOML scenario file (and its top-level `seed`), with
        `overrides` (options given on the command line; None values ignored) on top."""
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except OSError as exc:
            raise FaultConfigError("cannot read the scenario file %s: %s"
                                   % (path, exc.strerror or exc)) from None
        except tomllib.TOMLDecodeError as exc:
            raise FaultConfigError("scenario file %s: %s" % (path, exc)) from None
        links = doc.get("links", {})
        if not isinstance(links, dict):
            raise FaultConfigError("scenario file %s: [links] must be a table" % path)
        unknown = sorted(set(links) - set(FIELDS))
        if unknown:
            raise FaultConfigError("scenario file %s: unknown [links] setting(s) %s (known: %s)"
                                   % (path, ", ".join(unknown), ", ".join(sorted(FIELDS))))
        settings = dict(links)
        if "seed" in doc and "seed" not in settings:
            settings["seed"] = doc["seed"]
        settings.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**settings)
        except FaultConfigError as exc:
            raise FaultConfigError("scenario file %s: %s" % (path, exc)) from None

    @property
    def active(self):
        """Names of the faults in force (for the live status)."""
        out = []
        if self.unreachable:
            out.append("unreachable %g%% (%s)" % (self.unreachable * 100, self.unreachable_mode))
        if self.latency_ms or self.jitter_ms:
            out.append("latency %g±%g ms" % (self.latency_ms, self.jitter_ms))
        if self.bytes_per_s:
            out.append("slow links %g B/s (%g%%)" % (self.bytes_per_s, self.slow_share * 100))
        if self.drop_sessions:
            out.append("drop %g%% of sessions" % (self.drop_sessions * 100))
        return out

    def unreachable_as(self, meter_id):
        """None (reachable), "refused" or "silent" for this meter (stable per seed)."""
        if self.unreachable and _fraction(self.seed, meter_id, "unreachable") < self.unreachable:
            return self.unreachable_mode
        return None

    def slow(self, meter_id):
        """This meter's line speed in bytes/s, or None for a fast link."""
        if self.bytes_per_s and _fraction(self.seed, meter_id, "slow") < self.slow_share:
            return self.bytes_per_s
        return None

    def session(self, meter_id):
        """The faults of one new session with this meter."""
        drop_after = None
        if self.drop_sessions and self._rng.random() < self.drop_sessions:
            drop_after = self._rng.randint(1, 3)
        return SessionFaults(self, self.slow(meter_id), drop_after)

    def delay_s(self, nbytes, bytes_per_s=None):
        """How late an answer of `nbytes` leaves: latency, jitter and line time."""
        d = self.latency_ms
        if self.jitter_ms:
            d += self._rng.uniform(0.0, self.jitter_ms)
        d /= 1000.0
        if bytes_per_s:
            d += nbytes / bytes_per_s
        return d


class SessionFaults:
    """One session's faults: `delay_s(nbytes)` and `drop_now()` (True once, at the request
    after which the session is cut)."""

    def __init__(self, faults, bytes_per_s, drop_after):
        self.faults = faults
        self.bytes_per_s = bytes_per_s
        self.drop_after = drop_after
        self.requests = 0

    @property
    def shaped(self):
        """True when answers are delayed at all."""
        f = self.faults
        return bool(f.latency_ms or f.jitter_ms or self.bytes_per_s)

    def delay_s(self, nbytes):
        return self.faults.delay_s(nbytes, self.bytes_per_s)

    def drop_now(self, requests=1):
        """Count `requests` answered; True when the session must be cut at this answer."""
        self.requests += requests
        if self.drop_after is not None and self.requests >= self.drop_after:
            self.drop_after = None
            self.faults.sessions_dropped += 1
            return True
        return False



def _check(name, value):
    kind, lo, hi = FIELDS[name]
    if name == "bytes_per_s" and value is None:
        return None
    if name == "unreachable_mode":
        if value not in MODES:
            raise FaultConfigError("unreachable_mode is %s, not %r" % (" or ".join(MODES), value))
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind is int and not isinstance(value, int)):
        raise FaultConfigError("%s must be a number, not %r" % (name, value))
    if not lo <= value <= hi:
        raise FaultConfigError("%s must be %g..%g, not %r" % (name, lo, hi, value))
    return kind(value)
