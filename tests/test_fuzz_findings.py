"""The fuzzer's findings: a refused request that changes state is one; findings are
deduplicated by symptom (one reproducer, the others counted); a target that stops answering
after a finding is reset (hard reset, else power cycle) before the next case, and a session
on a target that cannot be reset stops saying why."""
import os
import signal

import pytest

from firmware.cosem import base as cosem_base
from hil.fuzz.case import Case, Finding
from hil.fuzz.runner import FuzzSession
from hil.targets.base import HARD_RESET
from hil.targets.emulator import EmulatorTarget
from hil.targets.pty import PtyTarget
from protocol.obis import Obis


def test_a_refused_set_that_changes_state_is_a_finding(monkeypatch):
    """No refused request changes state: a meter whose SET of the logical device name (read
    only) writes it and then refuses is a finding; the sound meter refuses and keeps it."""
    from firmware.dlms import server

    name = bytes(Obis("0.0.42.0.0.255"))
    write, get, written = server.Session._write, cosem_base.CosemObject.get, {}

    def writes_then_refuses(self, assoc, desc, value):
        if bytes(desc[1]) == name and desc[2] == 2:
            written["value"] = value
            return cosem_base.READ_WRITE_DENIED
        return write(self, assoc, desc, value)

    def reads_what_was_written(self, attr, selector, params, assoc):
        if self.obis == name and attr == 2 and "value" in written:
            return written["value"]
        return get(self, attr, selector, params, assoc)

    step = {"op": "set", "class": 1, "obis": "0.0.42.0.0.255", "attr": 2,
            "data": "0903414243"}
    with EmulatorTarget() as t:
        case = Case(t)
        case.run({"op": "associate", "role": "utility"})
        case.run(dict(step))  # the sound meter refuses it and keeps the name
        monkeypatch.setattr(server.Session, "_write", writes_then_refuses)
        monkeypatch.setattr(cosem_base.CosemObject, "get", reads_what_was_written)
        with pytest.raises(Finding, match="refused request changed state"):
            case.run(dict(step))
        case.close()



def test_findings_of_one_symptom_are_one_whatever_their_numbers():
    a = Finding("answer to another invoke-id", "0xC0 answered with invoke-id 3 to a request with 2")
    b = Finding("answer to another invoke-id", "0xC0 answered with invoke-id 9 to a request with 8")
    c = Finding("no answer", "liveness probe GET: LinkError")
    assert a.symptom == b.symptom != c.symptom


def test_a_defect_seen_again_is_counted_not_saved_again(monkeypatch, tmp_path):
    get = cosem_base.CosemObject.get  # the planted defect: every access selection ignored
    monkeypatch.setattr(cosem_base.CosemObject, "get",
                        lambda self, attr, selector, params, assoc: get(self, attr, 0, None,
                                                                        assoc))
    with EmulatorTarget() as t:
        report = FuzzSession(t, seed=1, max_examples=90, out=str(tmp_path), power_steps=False,
                             shrink_s=0).run()
    symptoms = [f["symptom"] for f in report["findings"]]
    assert "selective access ignored: an attribute without selective access answered with " \
        "data" in symptoms, symptoms
    assert len(symptoms) == len(set(symptoms))  # one reproducer per symptom
    assert sum(f["seen_again"] for f in report["findings"]) >= 1  # the others counted
    files = sorted(n for n in os.listdir(tmp_path) if n.startswith("finding-"))
    assert len(files) == len(symptoms)


class _Unresettable(PtyTarget):
    capabilities = frozenset()


@pytest.mark.parametrize("target_class, resets", [(PtyTarget, True), (_Unresettable, False)])
def test_a_target_left_silent_after_a_finding_is_reset_before_the_next_case(target_class,
                                                                          resets):
    with target_class() as t:
        session = FuzzSession(t, seed=1, max_examples=1, timeout=2.0)
        os.kill(t.processes()[0], signal.SIGSTOP)  # the meter hangs (as a defect may leave it)
        session._recover()
        if not resets:
            assert session.stopped == "the target stopped answering and cannot be reset"
            os.kill(t.processes()[0], signal.SIGCONT)
            return
        assert HARD_RESET in t.capabilities and session.stopped is None
        case = Case(t, timeout=5.0)  # the reset meter answers the next case
        case.run({"op": "associate", "role": "public"})
        assert case.client is not None
        case.close()
