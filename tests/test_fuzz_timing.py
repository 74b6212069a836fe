"""The fuzzer's timeouts and case budget come from the target (hil/fuzz/timing.py), it counts
failed associations, and it watches the size of the meter process it started
(hil/fuzz/growth.py)."""
import time

import pytest

from hil.fuzz import timing
from hil.fuzz.case import Case
from hil.fuzz.growth import GrowthWatch
from hil.fuzz.runner import FuzzSession
from hil.targets.emulator import EmulatorTarget
from hil.targets.pty import PtyTarget, python_launcher
from protocol.keys import demo_keys

SLOW_AARQ_S = 3.3  # longer than the old fixed 3 s timeout: an HLS association on a slow board


class SlowAssociations(EmulatorTarget):
    """The emulator, but every association request is answered after SLOW_AARQ_S."""

    def _start(self):
        from firmware.dlms import server

        original = server.Session._aarq

        def slow_aarq(session, sap, apdu):
            time.sleep(SLOW_AARQ_S)  # the slow meter (not a synchronisation)
            return original(session, sap, apdu)
        server.Session._aarq = slow_aarq
        self._restore = lambda: setattr(server.Session, "_aarq", original)
        super()._start()

    def _stop(self):
        super()._stop()
        self._restore()


def test_a_slow_target_gets_timeouts_from_its_round_trip_and_the_duration_holds():
    """With the old fixed 3 s timeout every association here timed out and the probe was a
    "no answer" finding; a 25-case chunk also outlasted any --duration."""
    with SlowAssociations() as meter:
        report = FuzzSession(meter, seed=1, duration_s=8, steps_per_case=3).run()
    assert report["findings"] == []
    assert report["probe_s"] >= SLOW_AARQ_S
    assert report["timeout_s"] >= timing.PROBE_FACTOR * SLOW_AARQ_S
    assert report["associations"]["unanswered"] == 0
    assert 1 <= report["cases"] <= 3  # the rest of the chunk of 25 sends nothing


def test_the_timeout_covers_a_maximal_pdu_at_the_line_speed():
    assert timing.answer_timeout(0.01) == timing.MIN_TIMEOUT_S
    at_9600 = timing.answer_timeout(0.01, baudrate=9600)
    assert at_9600 - timing.MIN_TIMEOUT_S == pytest.approx(timing.LINK_OCTETS * 10 / 9600,
                                                           abs=0.001)
    assert timing.answer_timeout(2.0) == 2.0 * timing.PROBE_FACTOR
    assert timing.silence_seconds(0.01) == timing.MIN_SILENCE_S


def test_refused_associations_are_counted():
    wrong = demo_keys()
    wrong.password = b"not-the-password"
    with EmulatorTarget(keys=wrong) as meter:
        case = Case(meter)
        case.run({"op": "associate", "role": "reader"})
        case.run({"op": "associate", "role": "public"})
        case.close()
        assert case.associations == {"attempted": 2, "refused": 1}
        report = FuzzSession(meter, seed=1, max_examples=3, roles=["reader"]).run()
    a = report["associations"]
    assert a["attempted"] >= 3 and a["refused"] == a["attempted"]


def test_growth_after_the_warm_up_beyond_the_limit_is_a_finding():
    sizes = iter([1000, 5000, 5100, 5200, 9000, 20000])  # kB per case
    watch = GrowthWatch(lambda: [42], limit_kb=10000, warmup=3, read=lambda pid: next(sizes))
    assert [watch.sample() for _ in range(5)] == [None] * 5  # 9000: 3900 kB above 5100
    assert "14900 kB more" in watch.sample()
    assert watch.summary()["baseline_kb"] == 5100


def test_a_new_process_starts_a_new_baseline():
    pids = [[1]] * 4 + [[2]] * 2
    sizes = iter([100, 100, 100, 90000, 90000, 90000])
    watch = GrowthWatch(lambda: pids.pop(0), limit_kb=1000, warmup=1,
                        read=lambda pid: next(sizes))
    assert [watch.sample() for _ in range(4)][-1] is not None  # pid 1 grew
    assert watch.sample() is None and watch.sample() is None  # pid 2: its own baseline


LEAK = (
    "from firmware.dlms import server\n"
    "_handle, _kept = server.Session.handle, []\n"
    "def leaking(self, sap, apdu):\n"
    "    _kept.append(bytearray(512 * 1024))  # the planted leak: 512 kB a request\n"
    "    return _handle(self, sap, apdu)\n"
    "server.Session.handle = leaking\n")


def test_a_meter_process_that_grows_without_bound_is_a_finding(tmp_path):
    with PtyTarget(launcher=python_launcher(LEAK)) as meter:
        assert meter.processes()
        report = FuzzSession(meter, seed=1, max_examples=30, steps_per_case=10,
                             rss_limit_kb=8 * 1024, out=str(tmp_path)).run()
    kinds = [f["symptom"].split(":")[0] for f in report["findings"]]
    assert kinds == ["process grew"], report["findings"]
    assert report["stopped"].startswith("the target's process grew")
    assert report["process_rss"]["peak_growth_kb"] > 8 * 1024
    assert report["requests"] < 100  # no step is sent once the session stopped


def test_the_sound_pty_meter_does_not_grow():
    with PtyTarget() as meter:
        report = FuzzSession(meter, seed=1, max_examples=8, steps_per_case=10).run()
    assert report["findings"] == []
    # sampled after every case (hypothesis may run a case beyond max_examples that it
    # does not count, e.g. one whose draw overran)
    assert report["process_rss"]["samples"] == report["cases"] >= 8
