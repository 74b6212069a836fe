"""Selective access for the fuzzer: GETs of profile buffers (and of attributes that have no
selective access) with range and entry descriptors — valid, at the boundaries and malformed —
and the oracle that the answer matches what was asked.

A step (hil/fuzz/case.py) `{"op": "select", "class", "obis", "attr", "selective": BOOL,
"selector": N, "spec": {...}}` names its descriptor relative to the meter (seconds from the
meter's clock, the n-th of the profile's capture objects). The case resolves it against the
meter just before sending (`build`) and stores the octets as `access` and what the answer may
contain as `expect`, so a reproducer replays the very octets and checks the same.

`spec` kinds:

    {"kind": "range", "from_s": S, "to_s": S, "bound": "datetime|unix|no-deviation|wrong-type",
     "restrict": "clock|other", "columns": [i, ...]}    selector 1's parameters
    {"kind": "entry", "from": N, "to": N, "from_col": N, "to_col": N}   selector 2's
    {"kind": "params", "hex": HEX}                     any octets as the parameters

`check(expect, outcome)` is the oracle: an answer comes (a refusal is a DLMS result, never
silence); an attribute without selective access, or an access selector the class does not
define, is refused, not answered with data; a buffer selected by a well-formed range holds
only entries whose time lies in the range, with the columns asked; one selected by entries
holds at most the entries and columns asked.
"""
from protocol import axdr
from protocol.cosem_types import CosemDateTime
from protocol.errors import ProtocolError
from protocol.obis import Obis

RANGE, ENTRY = 1, 2
CLOCK_DEF = (8, bytes(Obis("0.0.1.0.0.255")), 2)
OTHER_DEF = (3, bytes(Obis("1.0.1.8.0.255")), 2)
UNKNOWN_COLUMN = (1, bytes(6), 2)  # a capture definition no profile holds
DEVIATION = -330  # the bounds' deviation (India, UTC+05:30: any specified one would do)
NO_DEVIATION_SLACK_S = 14 * 3600  # a bound without deviation is in the meter's local time
U32 = 0xFFFFFFFF


def _definition(class_id, obis, attr, data_index=0):
    return axdr.Structure([axdr.UInt16(class_id), bytes(obis), axdr.Int8(attr),
                           axdr.UInt16(data_index)])


def _key(definition):
    """(class, obis, attr) of a decoded capture definition, or None when it is not one."""
    try:
        class_id, obis, attr, _index = definition
        return int(class_id), bytes(obis), int(attr)
    except (TypeError, ValueError):
        return None


def _bound(kind, t):
    t = min(max(int(t), 0), U32)
    if kind == "unix":
        return axdr.UInt32(t)
    if kind == "wrong-type":
        return True  # a boolean where a date-time belongs
    raw = CosemDateTime.from_unix(t, deviation=DEVIATION).raw
    if kind == "no-deviation":
        raw = raw[:9] + b"\x80\x00" + raw[11:]
    return raw


def build(step, now_s, capture_defs):
    """(access octets, expect) of a select step, against the meter's clock `now_s` (Unix
    seconds, None when unknown) and the profile's capture objects `capture_defs` (a list of
    decoded capture definitions, empty when unknown)."""
    selector, spec = int(step["selector"]) & 0xFF, step["spec"]
    expect = {"selective": bool(step.get("selective")), "defined": selector in (RANGE, ENTRY)}
    kind = spec["kind"]
    if kind == "params":
        return bytes((selector,)) + bytes.fromhex(spec["hex"]), expect
    if kind == "range":
        params = _range(spec, now_s, capture_defs, expect)
    else:
        params = axdr.Structure([axdr.UInt32(spec["from"] & U32), axdr.UInt32(spec["to"] & U32),
                                 axdr.UInt16(spec["from_col"] & 0xFFFF),
                                 axdr.UInt16(spec["to_col"] & 0xFFFF)])
        _entry_expectation(spec, len(capture_defs), expect)
    # the descriptor's own rules hold only under the selector they were written for
    if selector != (RANGE if kind == "range" else ENTRY):
        for k in ("t_from", "t_to", "time_index", "columns", "rows_max", "columns_max"):
            expect.pop(k, None)
    return bytes((selector,)) + axdr.encode(params), expect


def _range(spec, now_s, capture_defs, expect):
    now = now_s if now_s is not None else 0
    t_from, t_to = now + int(spec["from_s"]), now + int(spec["to_s"])
    keys = [_key(d) for d in capture_defs]
    columns = []
    for i in spec.get("columns", []):
        columns.append(capture_defs[i] if i < len(capture_defs) else
                       _definition(*UNKNOWN_COLUMN))
    restrict = CLOCK_DEF if spec["restrict"] == "clock" else OTHER_DEF
    params = axdr.Structure([_definition(*restrict), _bound(spec["bound"], t_from),
                             _bound(spec["bound"], t_to), axdr.Array(columns)])
    if now_s is None or spec["restrict"] != "clock" or spec["bound"] == "wrong-type" \
            or any(i >= len(capture_defs) for i in spec.get("columns", [])):
        return params  # nothing the answer must hold beyond a well-formed answer
    slack = NO_DEVIATION_SLACK_S if spec["bound"] == "no-deviation" else 0
    lo, hi = min(max(t_from, 0), U32), min(max(t_to, 0), U32)
    expect.update(t_from=lo - slack, t_to=hi + slack)
    chosen = [keys[i] for i in spec.get("columns", [])] or keys
    expect["columns"] = len(chosen) or None
    if CLOCK_DEF in chosen:
        expect["time_index"] = chosen.index(CLOCK_DEF)
    return params


def _entry_expectation(spec, ncols, expect):
    first, last = max(1, spec["from"] & U32), spec["to"] & U32
    if last:
        expect["rows_max"] = max(0, last - first + 1)
    first_col, last_col = max(1, spec["from_col"] & 0xFFFF), spec["to_col"] & 0xFFFF
    if last_col:
        expect["columns_max"] = max(0, last_col - first_col + 1)
    elif ncols:
        expect["columns_max"] = max(0, ncols - first_col + 1)


def decode_buffer(octets):
    """The data value of a GET answer's octets (blocks joined); ProtocolError if malformed."""
    return axdr.decode(bytes(octets))


def _time_of(value):
    """Unix seconds of a date-time column value (12-octet string), None if not one or not
    placed in time (deviation not specified, fields unspecified)."""
    if not isinstance(value, (bytes, bytearray)) or len(value) != 12:
        return None
    try:
        dt = CosemDateTime(bytes(value)).to_datetime()
    except (ProtocolError, ValueError, OverflowError, TypeError):
        return None
    return dt.timestamp() if dt.tzinfo is not None else None


class Mismatch(Exception):
    """The answer does not match what was asked: `kind`, `detail` (turned into a Finding)."""

    def __init__(self, kind, detail):
        super().__init__("%s: %s" % (kind, detail))
        self.kind = kind
        self.detail = detail


def check(expect, outcome):
    """Raise Mismatch when `outcome` — ("silent",), ("refused", what), ("data", value) or
    ("incomplete",) — is not an answer to what `expect` (of `build`) asked."""
    if outcome[0] == "silent":
        raise Mismatch("no answer to a selective access",
                       "a GET with access selection got no answer (a refusal is a DLMS result)")
    if outcome[0] != "data":
        return
    value = outcome[1]
    if not expect.get("selective"):
        raise Mismatch("selective access ignored",
                       "an attribute without selective access answered with data")
    if not expect.get("defined"):
        raise Mismatch("unknown access selector answered",
                       "an access selector the class does not define got data")
    rules = ("t_from", "rows_max", "columns_max", "columns")
    if not any(k in expect for k in rules):
        return
    if not isinstance(value, list):
        raise Mismatch("selective answer is not a buffer",
                       "a selected buffer answered with %s" % type(value).__name__)
    rows_max = expect.get("rows_max")
    if rows_max is not None and len(value) > rows_max:
        raise Mismatch("more entries than asked",
                       "%d entries to an entry descriptor of %d" % (len(value), rows_max))
    for n, row in enumerate(value):
        if not isinstance(row, list):
            raise Mismatch("selective answer is not a buffer", "entry %d is no structure" % n)
        width = expect.get("columns")
        if width is not None and len(row) != width:
            raise Mismatch("columns other than asked",
                           "entry %d has %d columns, %d asked" % (n, len(row), width))
        most = expect.get("columns_max")
        if most is not None and len(row) > most:
            raise Mismatch("columns other than asked",
                           "entry %d has %d columns, at most %d asked" % (n, len(row), most))
        ti = expect.get("time_index")
        if ti is not None and ti < len(row):
            t = _time_of(row[ti])
            if t is not None and not expect["t_from"] <= t <= expect["t_to"]:
                raise Mismatch("entry outside the range asked",
                               "entry %d at %d, range %d..%d" % (n, t, expect["t_from"],
                                                                 expect["t_to"]))
