"""Every writable attribute and every method of the meter's COSEM table, fed boundary values
(issue 8 item 2, the whole class): the answer is always a DLMS result code; a refusal changes
nothing (the core record is byte for byte the same); and whatever was accepted, the meter
still steps, saves and answers every GET afterwards (a value it cannot hold never enters).
The per-class examples are pinned in tests/firmware/test_input_ranges.py."""
from hypothesis import example, given
from hypothesis import strategies as st

from firmware.cosem import base, table
from firmware.dlms import axdr as D
from tests.firmware import cosem_meter

T0 = 1767225600  # 2026-01-01 00:00:00 UTC


def _targets():
    m = cosem_meter.make_meter(T0)
    out = []
    for i, o in enumerate(table.build(m).objects):
        out += [(i, "set", a.id) for a in o.attrs if a.set is not None]
        out += [(i, "action", mt.id) for mt in o.methods]
    return out


TARGETS = _targets()


def _edges(tag):
    n, signed = D.INT_TAGS[tag]
    lo, hi = (-(1 << (8 * n - 1)), (1 << (8 * n - 1)) - 1) if signed else (0, (1 << 8 * n) - 1)
    near = [0, 1, 59, 60, 86399, 86400, 946684799, 946684800, 4102444799, 4102444800,
            0xFFFFFFFE, 0xFFFFFFFF, 0x100000000]
    return st.sampled_from([v for v in near if lo <= v <= hi] + [lo, hi, lo + 1, hi - 1])


def _date_time():
    year = st.sampled_from([0, 1999, 2000, 2026, 2099, 2100, 2106, 2107, 0xFFFE, 0xFFFF])
    return st.builds(
        lambda y, mo, d, hh, dev: bytes((y >> 8, y & 0xFF, mo, d, 0xFF, hh, 0, 0, 0,
                                         dev >> 8 & 0xFF, dev & 0xFF, 0)),
        year, st.integers(0, 13), st.sampled_from([0, 1, 28, 29, 30, 31, 32]),
        st.sampled_from([0, 23, 24, 0xFF]), st.sampled_from([0, 0x8000, 0xFEB6, 720, 721]))


def _date():
    return st.builds(lambda y, mo, d, wd: bytes((y >> 8, y & 0xFF, mo, d, wd)),
                     st.sampled_from([0, 1999, 2000, 2026, 2099, 2100, 2107, 0xFFFF]),
                     st.integers(0, 13), st.sampled_from([0, 1, 29, 30, 31]),
                     st.sampled_from([1, 3, 7, 0xFF]))


SCALARS = st.one_of(
    st.sampled_from(sorted(D.INT_TAGS)).flatmap(lambda t: _edges(t).map(lambda v: (t, v))),
    st.one_of(_date_time(), _date(), st.binary(max_size=70),
              st.sampled_from([b"127.0.0.1:4060", b"[::1]:65535", b"h:0", b"h:65536"])
              ).map(lambda b: (D.OCTET_STRING, b)),
    st.binary(max_size=24).map(lambda b: (D.VISIBLE_STRING, b)),
    st.just((D.NULL, None)), st.booleans().map(lambda b: (D.BOOLEAN, b)),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6).map(lambda v: (D.STRUCTURE, v)),
                            st.lists(inner, max_size=6).map(lambda v: (D.ARRAY, v))),
    max_leaves=12)


def _all_gets_answer(model):
    for o in model.objects:
        for a in [1] + [a.id for a in o.attrs]:
            r = o.get(a, 0, None, base.UTILITY)
            assert isinstance(r, (bytes, bytearray)), (o.name, a, r)


CLOCK_SET = (0, "set", 2)  # the clock is the table's first object
assert table.build(cosem_meter.make_meter(T0)).objects[0].class_id == 8


@given(st.sampled_from(TARGETS), st.lists(VALUES, min_size=1, max_size=3))
@example(CLOCK_SET, [(D.OCTET_STRING, b"\x08\x3b\x01\x01\xff\x00\x00\x00\x00\x80\x00\x00")])
def test_any_value_is_answered_refusals_change_nothing_and_the_meter_stays_healthy(target, values):
    index, kind, ident = target
    m = cosem_meter.make_meter(T0)
    model = table.build(m)
    obj = model.objects[index]
    for value in values:
        before = m.dump_core()
        if kind == "set":
            code = obj.set(ident, value, base.UTILITY)
        else:
            code, data = obj.action(ident, value, base.UTILITY)
            assert data is None or isinstance(data, (bytes, bytearray))
        assert isinstance(code, int) and (code == base.SUCCESS or 0 < code <= 250), code
        if code != base.SUCCESS:
            assert m.dump_core() == before, (obj.name, kind, ident, value, code)
        m.clock.advance(3600)
        m.tick()
        m.save()
        _all_gets_answer(model)
