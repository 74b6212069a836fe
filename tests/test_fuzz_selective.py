"""The fuzzer's selective-access steps (hil/fuzz/selective.py): GETs of profile buffers with
range and entry descriptors (valid, at the boundaries, malformed) and of attributes without
selective access; the oracle that an answer matches what was asked. The sound meter passes
them all; a meter with a planted defect in its selection is a finding."""
import pytest

from firmware.cosem import base as cosem_base
from firmware.cosem import profile as cosem_profile
from hil.fuzz import selective
from hil.fuzz import strategies as S
from hil.fuzz.case import Case, Finding
from hil.fuzz.runner import FuzzSession
from hil.targets.emulator import EmulatorTarget

LOAD = "1.0.99.1.0.255"
DAY_S = 86400


def select(selector, spec, obis=LOAD, class_id=7, attr=2, has_selective=True):
    return {"op": "select", "class": class_id, "obis": obis, "attr": attr,
            "selective": has_selective, "selector": selector, "spec": spec}


def range_spec(from_s, to_s, bound="datetime", restrict="clock", columns=()):
    return {"kind": "range", "from_s": from_s, "to_s": to_s, "bound": bound,
            "restrict": restrict, "columns": list(columns)}


def entry_spec(first, last, first_col=1, last_col=0):
    return {"kind": "entry", "from": first, "to": last, "from_col": first_col,
            "to_col": last_col}


SOUND_STEPS = [
    select(1, range_spec(-3 * 3600, 0)),  # the last three hours: 12 entries
    select(1, range_spec(-DAY_S, 0, bound="unix", columns=[1, 0])),
    select(1, range_spec(-DAY_S, -3600, bound="no-deviation", columns=[0, 4])),
    select(1, range_spec(0, -DAY_S)),  # inverted: no entry
    select(1, range_spec(-(10 ** 10), 10 ** 10)),  # beyond both ends: every entry
    select(1, range_spec(-DAY_S, 0, bound="wrong-type")),
    select(1, range_spec(-DAY_S, 0, restrict="other")),
    select(1, range_spec(-DAY_S, 0, columns=[6])),  # a column the profile does not hold
    select(2, entry_spec(3, 5, 2, 3)),
    select(2, entry_spec(1, 0)),  # to 0 = the last
    select(2, entry_spec(5, 3)),  # inverted
    select(2, entry_spec(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFFFF)),  # huge
    select(2, entry_spec(1, 2, 4, 2)),  # columns inverted
    select(1, entry_spec(1, 2)),  # an entry descriptor under the range selector
    select(2, range_spec(-DAY_S, 0)),  # and the other way round
    select(0, entry_spec(1, 2)),  # selector 0 (it used to answer the whole buffer)
    select(3, entry_spec(1, 2)), select(255, range_spec(-DAY_S, 0)),  # undefined selectors
    select(2, {"kind": "params", "hex": "0f00"}),  # wrong types
    select(1, {"kind": "params", "hex": "0202" * 30 + "00"}),  # deep nesting
    select(2, {"kind": "params", "hex": "ffee"}),  # no A-XDR at all
    select(1, range_spec(-DAY_S, 0), "0.0.99.98.3.255"),  # an event log
    select(2, entry_spec(1, 1), "1.0.99.2.0.255"),
    select(1, entry_spec(1, 2), "0.0.1.0.0.255", class_id=8, has_selective=False),
    select(2, entry_spec(1, 2), LOAD, attr=3, has_selective=False),
    select(1, range_spec(-DAY_S, 0), "9.9.9.9.9.9", class_id=77, attr=9, has_selective=False),
]


@pytest.fixture(scope="module")
def meter():
    with EmulatorTarget() as t:
        t.advance(2 * DAY_S)  # two days of load profile (192 entries) and daily profile
        yield t


@pytest.mark.parametrize("role", ["reader", "utility"])
def test_the_sound_meter_answers_every_selection_as_asked(meter, role):
    case = Case(meter)
    case.run({"op": "associate", "role": role, "max_pdu": 512})
    for step in SOUND_STEPS:
        case.run(dict(step))
        assert case.client is not None, step  # every one answered on the same association
    case.close()


def test_the_oracle_is_not_vacuous_on_the_sound_meter(meter):
    """The valid selections really select: a range of three hours gets the 12 closed
    15-minute entries that start in it (of 192); entries 3..5 get three of two columns; an
    access selection with selector 0 is refused."""
    case = Case(meter)
    case.run({"op": "associate", "role": "reader"})
    outcomes = []
    real_check = selective.check
    try:
        selective.check = lambda expect, outcome: (outcomes.append(outcome),
                                                   real_check(expect, outcome))
        case.run(select(1, range_spec(-3 * 3600, 0)))
        case.run(select(2, entry_spec(3, 5, 2, 3)))
        case.run(select(0, entry_spec(1, 2)))
    finally:
        selective.check = real_check
        case.close()
    (kind1, rows1), (kind2, rows2), refused = outcomes
    assert (kind1, len(rows1), len(rows1[0])) == ("data", 12, 5)
    assert (kind2, len(rows2), [len(r) for r in rows2]) == ("data", 3, [2, 2, 2])
    assert refused[0] == "refused"


def _planted(monkeypatch, how):
    """Plant a selection defect in the emulated meter's profiles (same process)."""
    select_ = cosem_profile.ProfileGeneric.select

    def defective(self, selector, params):
        if how == "range ignored" and selector == 1:
            return self.encode_rows(self.source.rows(0, None))
        if how == "one entry more" and selector == 2:
            items = cosem_profile._as_list(params, 4)
            first = max(1, items[0][1])
            return self.encode_rows(self.source.rows(first - 1, items[1][1] + 1))
        return select_(self, selector, params)
    monkeypatch.setattr(cosem_profile.ProfileGeneric, "select", defective)


@pytest.mark.parametrize("how, step, symptom", [
    ("range ignored", select(1, range_spec(-3600, 0)), "entry outside the range asked"),
    ("one entry more", select(2, entry_spec(2, 4)), "more entries than asked"),
])
def test_a_selection_that_does_not_match_the_request_is_a_finding(monkeypatch, how, step,
                                                                  symptom):
    _planted(monkeypatch, how)
    with EmulatorTarget() as t:
        t.advance(DAY_S)
        case = Case(t)
        case.run({"op": "associate", "role": "reader"})
        with pytest.raises(Finding, match=symptom):
            case.run(dict(step))
        case.close()


def test_selective_access_ignored_by_an_attribute_without_it_is_a_finding(monkeypatch):
    get = cosem_base.CosemObject.get
    monkeypatch.setattr(cosem_base.CosemObject, "get",
                        lambda self, attr, selector, params, assoc: get(self, attr, 0, None,
                                                                        assoc))
    with EmulatorTarget() as t:
        case = Case(t)
        case.run({"op": "associate", "role": "public"})
        with pytest.raises(Finding, match="selective access ignored"):
            case.run(select(1, range_spec(-3600, 0), "0.0.1.0.0.255", class_id=8,
                            has_selective=False))
        case.close()


def test_the_fuzzer_finds_and_shrinks_a_range_that_is_not_applied(monkeypatch, tmp_path):
    _planted(monkeypatch, "range ignored")
    with EmulatorTarget() as t:
        report = FuzzSession(t, seed=3, max_examples=60, out=str(tmp_path), max_findings=1,
                             power_steps=False, shrink_s=60).run()
    assert [f["symptom"].split(":")[0] for f in report["findings"]] == [
        "entry outside the range asked"], report["findings"]
    assert report["findings"][0]["steps"] <= 2  # [associate,] select
    assert any(k.startswith("GET selective: 7/") for k in report["coverage"])


@pytest.mark.parametrize("expect, outcome, kind", [
    ({"selective": True, "defined": True}, ("silent",), "no answer to a selective access"),
    ({"selective": False, "defined": True}, ("data", 5), "selective access ignored"),
    ({"selective": True, "defined": False}, ("data", []), "unknown access selector answered"),
    ({"selective": True, "defined": True, "rows_max": 1}, ("data", [[1], [2]]),
     "more entries than asked"),
    ({"selective": True, "defined": True, "columns_max": 1}, ("data", [[1, 2]]),
     "columns other than asked"),
    ({"selective": True, "defined": True, "columns": 2, "t_from": 0, "t_to": 1},
     ("data", [[1]]), "columns other than asked"),
    ({"selective": True, "defined": True, "rows_max": 3}, ("data", 7),
     "selective answer is not a buffer"),
])
def test_the_oracle_names_each_mismatch(expect, outcome, kind):
    with pytest.raises(selective.Mismatch, match=kind):
        selective.check(expect, outcome)


@pytest.mark.parametrize("expect, outcome", [
    ({"selective": False, "defined": True}, ("refused", 250)),  # a refusal is an answer
    ({"selective": True, "defined": False}, ("refused", "ExceptionResponse")),
    ({"selective": True, "defined": True, "rows_max": 0}, ("data", [])),
    ({"selective": True, "defined": True}, ("incomplete",)),
])
def test_the_oracle_accepts_refusals_and_what_was_asked(expect, outcome):
    selective.check(expect, outcome)


def test_every_selective_read_names_a_known_object():
    for class_id, obis, _attr in S.SELECTIVE_READS + S.NOT_SELECTIVE_READS:
        assert (class_id, obis) in S.KNOWN_OBJECTS

