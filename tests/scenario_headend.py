"""The field scenarios' stage (tests/test_scenarios_e2e.py): an emulated fleet and a head-end
driven the way a utility drives them.

- The fleet: `fleet.core.Fleet` (the real firmware core in every meter) served by its own
  `fleet.net.FleetServer` over real sockets on 127.0.0.1, every meter behind one data
  concentrator (DLMS gateway protocol), its registry written by `fleet.registry` as
  `bijli fleet serve --registry` writes it. In this process (tests.fleet_fallback.FleetThread)
  so a test can do what the field does besides DLMS: a consumer typing a token at the keypad
  (`Fleet.enter_token`), time passing (`Fleet.jump`), a meter losing power; and read the
  meters' own records (balance, relay, event log) as the truth to check against.
- The head-end: the `bijli` console script only. `bijli headend init / import / pay / jobs /
  notices / preview / audit / status` as subprocesses, and `bijli headend serve` (delivery and
  bulk workers, the HTTP API on 127.0.0.1:0, the push listener) as a subprocess that a test
  stops (an outage) and starts again. Every head-end process runs on the fleet's clock
  (BIJLI_HEADEND_CLOCK_OFFSET, headend/clock.py), computed when it starts.
- Keys: the fleet's meters have the INSECURE published demo keys under key reference
  "insecure-demo-keys"; the head-end's key file names that key set (no key bytes in it).
"""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx

from firmware.timeutil import IST_OFFSET_S, from_fields
from fleet import registry as fleet_registry
from fleet.core import Fleet
from tests.fleet_fallback import FleetThread
from tests.headend_db import _free_port
from tests.waiting import wait_until

BIJLI = os.path.join(os.path.dirname(sys.executable), "bijli")
HOUR, DAY = 3600, 86400


def ist(y, mo, d, hh=0, mm=0):
    """Unix seconds of a local (IST) date and time."""
    return from_fields(y, mo, d, hh, mm, 0) - IST_OFFSET_S


class Stage:
    """A fleet of `meters` starting at `start_s` (fleet clock at speed 1) and a head-end
    database `db_url` with the fleet's registry imported (`regions`: {segment: region}, a
    column the utility adds to the fleet's export). Use as a context manager."""

    def __init__(self, tmp_path, db_url, meters, start_s, regions=None, **fleet_options):
        self.tmp = tmp_path
        self.db_url = db_url
        fleet_options.setdefault("wake_untouched", False)  # only meters a scenario touches run
        self.fleet = Fleet(meters, seed=1, start_s=start_s, **fleet_options)
        self.push_port = _free_port()
        self.ft = FleetThread(self.fleet, gateway="127.0.0.1:0",
                              push_to="127.0.0.1:%d" % self.push_port)
        self.regions = regions or {}
        self.serve_proc = None
        self.api_base = None
        self.keys = {}
        self.log = tmp_path / "serve.log"
        self.key_file = tmp_path / "keys.json"
        with open(self.key_file, "w") as f:
            json.dump({"comment": "the emulated fleet's INSECURE demo keys",
                       "key_sets": {"insecure-demo-keys": {"comment": "INSECURE demo keys"}}}, f)

    # ---- set-up ---------------------------------------------------------------------------
    def __enter__(self):
        self.ft.start()
        rows = list(fleet_registry.rows(self.fleet, None, self.ft.server.gateway_address))
        self.ids = [r["meter_id"] for r in rows]
        self.registry_rows = rows
        path = self.tmp / "registry.csv"
        with open(path, "w", newline="") as f:  # the utility's export: the fleet's + region
            w = csv.DictWriter(f, list(rows[0]) + ["region"])
            w.writeheader()
            for r in rows:
                w.writerow(dict(r, region=self.regions.get(r["segment"], "")))
        self.cli("init")
        self.cli("import", str(path))
        return self

    def __exit__(self, *exc):
        try:
            self.serve_down()
        finally:
            self.ft.stop()

    # ---- the fleet ------------------------------------------------------------------------
    def on_fleet(self, fn, *args):
        """fn(fleet, *args) on the fleet's loop thread (the meters are not thread-safe)."""
        return self.ft.call(fn, self.fleet, *args)

    def now(self):
        """The fleet's time, to the millisecond."""
        return self.on_fleet(lambda f: f.clock.now_ms() / 1000)

    def meter(self, mid):
        """The firmware Meter of `mid`, advanced to now (read it on the fleet thread only)."""
        def get(f):
            f.open_session(mid).release()
            return f.meter(mid).meter
        return self.on_fleet(get)

    def own(self, mid):
        """What meter `mid` itself holds now: balance (paise), relay closed, control state,
        suspended, credits (paise, all tokens ever), events [(time, code, value, extra)]."""
        def read(f):
            f.open_session(mid).release()
            m = f.meter(mid).meter
            return {"balance": m.account.balance, "relay": bool(m.control.output_state),
                    "control_state": m.control.control_state,
                    "suspended": bool(m.policy.suspended), "credits": m.account.total_credits,
                    "events": [tuple(e[1:]) for e in m.events.latest(256)]}
        return self.on_fleet(read)

    def key_in(self, mid, digits):
        """A consumer types `digits` at meter `mid`'s keypad: the firmware's TokenResult."""
        return self.on_fleet(lambda f: f.enter_token(mid, digits.replace(" ", "")))

    def jump(self, seconds):
        """Let `seconds` pass on the fleet and run every rule instant inside, in order."""
        def go(f):
            f.jump(seconds)
            while f.run_due():
                pass
        self.on_fleet(go)

    # ---- the head-end as a user drives it ---------------------------------------------------
    def env(self, at=None):
        """The head-end's environment: its database, key file, notifier, and its clock on the
        fleet's (or at Unix second `at`, e.g. the days before the fleet's start)."""
        offset = (self.now() if at is None else at) - time.time()
        return dict(os.environ, BIJLI_HEADEND_DB=self.db_url, BIJLI_HEADEND_KEYS=str(
            self.key_file), BIJLI_HEADEND_CLOCK_OFFSET="%.3f" % offset,
            BIJLI_HEADEND_NOTIFIER="file:%s" % (self.tmp / "notices.jsonl"))

    def cli(self, *args, ok=True, at=None):
        """`bijli headend ARGS` (its clock at `at`, default the fleet's); the CompletedProcess
        (asserted rc 0 unless ok=False)."""
        r = subprocess.run([BIJLI, "headend"] + list(args), env=self.env(at),
                           capture_output=True, text=True, timeout=300)
        if ok:
            assert r.returncode == 0, "bijli headend %s: %s%s" % (" ".join(args), r.stdout,
                                                                  r.stderr)
        return r

    def cli_json(self, *args, at=None):
        """`bijli headend ARGS --json`, parsed."""
        return json.loads(self.cli(*(list(args) + ["--json"]), at=at).stdout)

    def meters_file(self, ids, name="meters.txt"):
        path = self.tmp / name
        path.write_text("".join("%s\n" % m for m in ids))
        return str(path)

    def serve_up(self, *extra):
        """Start `bijli headend serve` (workers, HTTP API, push listener); returns the API's
        base URL."""
        assert self.serve_proc is None
        cmd = [BIJLI, "headend", "serve", "--http", "127.0.0.1:0", "--push-listen",
               "127.0.0.1:%d" % self.push_port, "--poll", "0.05", "--retry-base", "0.2",
               "--retry-cap", "1", "--timeout", "5"] + list(extra)
        with open(self.log, "a") as f:  # the child keeps its own descriptor
            start = f.tell()
            self.serve_proc = subprocess.Popen(cmd, env=self.env(), stdout=f, stderr=f)

        def url():
            assert self.serve_proc.poll() is None, "serve exited: %s" % open(self.log).read()
            with open(self.log) as f:
                f.seek(start)
                m = re.search(r"http: API on (http://127\.0\.0\.1:\d+/api/v1)", f.read())
            return m and m.group(1)
        self.api_base = wait_until(url, "the API's address in the log", within=120, every=0.05)
        return self.api_base

    def serve_down(self):
        """Stop `bijli headend serve` (SIGTERM; it must exit cleanly): the head-end outage."""
        if self.serve_proc is None:
            return
        proc, self.serve_proc = self.serve_proc, None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, open(self.log).read()[-4000:]

    def api(self, role):
        """An HTTP client of the running API with a key of `role` (made once with
        `bijli headend apikey create`)."""
        if role not in self.keys:
            self.keys[role] = self.cli_json("apikey", "create", "--role", role, "--name",
                                            "scenario-" + role)["key"]
        return httpx.Client(base_url=self.api_base, timeout=60,
                            headers={"Authorization": "Bearer " + self.keys[role]})

    def recharges(self):
        return self.cli_json("status")["recharges"]


def running_dry(fleet, within_s=DAY):
    """Meter ids of `fleet` whose opening balance its household uses up within `within_s`
    (the population's own draw: no meter is forced into it)."""
    out = []
    for i in fleet.indices:
        spec = fleet.population.spec(i)
        if 0 < spec.opening_paise < spec.daily_cost() * within_s // DAY:
            out.append(spec.meter_id)
    return out
