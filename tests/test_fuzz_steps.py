"""The fuzzer's link and power steps (hil/fuzz/case.py): HDLC links with short information
fields and windows > 1 (segmented frames both ways), I-frames out of sequence, and the
target's power cycle / reset, each with a meter whose planted defect only that step finds."""
import pytest

from hil.fuzz.case import Case, Finding
from hil.fuzz.runner import FuzzSession
from hil.targets.emulator import EmulatorTarget
from hil.targets.pty import PtyTarget, python_launcher
from tests.hil_defects import DefectiveEmulator

LAX_SEQUENCE = (
    "from firmware.dlms import hdlc\n"
    "_iframe = hdlc.HdlcStation._iframe\n"
    "def lax(self, ctrl, info, segmented, handler):\n"
    "    self.vr = (ctrl >> 1) & 7  # the planted defect: any N(S) is the expected one\n"
    "    return _iframe(self, ctrl, info, segmented, handler)\n"
    "hdlc.HdlcStation._iframe = lax\n")


@pytest.fixture(scope="module")
def sound_pty():
    with PtyTarget() as t:
        yield t


@pytest.mark.parametrize("kind", ["ns-ahead", "ns-back", "ns-far"])
def test_a_frame_out_of_sequence_is_not_answered_by_the_sound_meter(sound_pty, kind):
    case = Case(sound_pty)
    case.run({"op": "associate", "role": "public"})
    case.run({"op": "get", "class": 8, "obis": "0.0.1.0.0.255", "attr": 2})
    case.run({"op": "sequence", "kind": kind})
    assert case.client is None  # the link is dropped after it
    case.run({"op": "get", "class": 8, "obis": "0.0.1.0.0.255", "attr": 2})  # a new one works
    assert case.client is not None
    case.close()


def test_a_meter_that_answers_a_frame_out_of_sequence_is_a_finding():
    with PtyTarget(launcher=python_launcher(LAX_SEQUENCE)) as meter:
        case = Case(meter)
        case.run({"op": "associate", "role": "public"})
        with pytest.raises(Finding, match="answered a frame out of sequence"):
            case.run({"op": "sequence", "kind": "ns-ahead"})
        case.close()
        report = FuzzSession(meter, seed=1, max_examples=20, steps_per_case=20,
                             max_findings=1).run()
    assert [f["symptom"].split(":")[0] for f in report["findings"]] == [
        "answered a frame out of sequence"]


@pytest.mark.parametrize("max_info, window", [(32, 1), (32, 4), (64, 7)])
def test_segmented_frames_and_windows_carry_a_block_transfer(sound_pty, max_info, window):
    case = Case(sound_pty)
    case.run({"op": "associate", "role": "utility"})
    case.run({"op": "link", "max_info": max_info, "window": window})
    assert case.role == "utility"
    params = case.client.framing.link.params
    assert params.max_info_tx <= max_info and params.max_info_rx <= max_info
    log = case.log
    before = len(log)
    case.run({"op": "get", "class": 15, "obis": "0.0.40.0.0.255", "attr": 2,
              "blocks": "in-order"})
    assert len(log) > before + 1  # the object list came (in blocks, in segments)
    assert case.coverage["HDLC link: max_info %d window %d" % (max_info, window)] == 1
    case.close()


def test_a_power_step_finds_a_token_credited_twice_after_a_power_cycle():
    """tests/hil_defects.py: a meter that forgets its used tokens at boot."""
    steps = [{"op": "associate", "role": "utility"},
             {"op": "token", "kind": "fresh", "rupees": 5},
             {"op": "power", "kind": "cycle"},
             {"op": "token", "kind": "replay", "rupees": 5}]
    with EmulatorTarget() as meter:
        case = Case(meter)
        for step in steps:
            case.run(dict(step))
        assert case.powered == 1 and case.credited_paise == 500
        case.close()
    with DefectiveEmulator() as meter:
        case = Case(meter)
        with pytest.raises(Finding, match="token credited twice"):
            for step in steps:
                case.run(dict(step))
        case.close()


def test_a_target_without_power_control_skips_the_power_step(sound_pty):
    case = Case(sound_pty)
    sound_pty_caps = sound_pty.capabilities
    try:
        sound_pty.capabilities = frozenset()
        case.run({"op": "power", "kind": "cycle"})
        assert case.powered == 0
    finally:
        sound_pty.capabilities = sound_pty_caps
        case.close()
