"""What the fuzzer addresses and how it builds and mutates octets: the bijli meter's objects
(valid descriptors, block-sized attributes, writable attributes with type-correct values,
methods), invalid descriptors, A-XDR values, and structure-aware mutation of APDUs from a
seed corpus (built-in requests plus the requests of capture files)."""
from hypothesis import strategies as st

from firmware import vocabulary as V
from protocol.obis import Obis


def _o(raw):
    return Obis(raw).dotted()


# (class, obis, attribute) any association may try to read
READS = [(8, _o(V.CLOCK), 2), (1, _o(V.SERIAL_NUMBER), 2), (1, _o(V.FIRMWARE_VERSION), 2),
         (3, _o(V.ENERGY_IMPORT), 2), (3, _o(V.ENERGY_IMPORT), 3), (3, _o(V.BALANCE), 2),
         (70, _o(V.DISCONNECT_CONTROL), 2), (71, _o(V.LIMITER), 3), (111, _o(V.ACCOUNT), 2),
         (115, _o(V.TOKEN_GATEWAY), 6), (40, _o(V.PUSH_SETUP), 3), (1, _o(V.HOLIDAYS), 2),
         (15, _o(V.CURRENT_ASSOCIATION), 1)]
# attributes whose answer takes several blocks (block transfer out)
BLOCK_READS = [(15, _o(V.CURRENT_ASSOCIATION), 2), (7, _o(V.LOAD_PROFILE), 2),
               (7, _o(V.LOAD_PROFILE), 3), (7, _o(V.DAILY_PROFILE), 2)]


def octet_string(max_size=8):
    """An A-XDR octet-string; its length drawn evenly (every length is a boundary to try)."""
    return st.sampled_from(range(max_size + 1)).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)).map(lambda b: bytes((9, len(b))) + b)


def _uint(tag, size):
    return st.integers(0, 256 ** size - 1).map(lambda n: bytes((tag,)) + n.to_bytes(size, "big"))


def _container(tag):
    return lambda items: bytes((tag, len(items))) + b"".join(items)


LEAVES = st.one_of(octet_string(), _uint(0x12, 2), _uint(0x06, 4), _uint(0x16, 1), _uint(0x11, 1),
                   st.sampled_from([b"\x00", b"\x03\x00", b"\x03\x01"]))
VALUES = st.recursive(LEAVES, lambda kids: st.one_of(
    st.lists(kids, max_size=3).map(_container(0x02)),
    st.lists(kids, max_size=3).map(_container(0x01))), max_leaves=6)
DATETIME = st.binary(min_size=12, max_size=12).map(lambda b: b"\x09\x0c" + b)

# (class, obis, attribute, type-correct values); every one also gets any A-XDR value
WRITES = [(8, _o(V.CLOCK), 2, DATETIME), (71, _o(V.LIMITER), 3, _uint(0x06, 4)),
          (1, _o(V.LOGICAL_DEVICE_NAME), 2, octet_string()),
          (1, _o(V.HOLIDAYS), 2, VALUES), (113, _o(V.CHARGE_ENERGY), 5, VALUES),
          (40, _o(V.PUSH_SETUP), 3, VALUES), (1, _o(V.SUSPENSION), 2, VALUES)]
# (class, obis, method, parameters or None)
METHODS = [(70, _o(V.DISCONNECT_CONTROL), 1, st.just(b"\x0f\x00")),
           (70, _o(V.DISCONNECT_CONTROL), 2, st.just(b"\x0f\x00")),
           (8, _o(V.CLOCK), 6, _uint(0x10, 2)), (111, _o(V.ACCOUNT), 3, VALUES),
           (15, _o(V.CURRENT_ASSOCIATION), 1, octet_string(16)),
           (115, _o(V.TOKEN_GATEWAY), 1, octet_string(24))]

OBIS_TEXT = st.binary(min_size=6, max_size=6).map(lambda b: Obis(b).dotted())
INVALID_ATTRIBUTES = st.tuples(st.integers(0, 0xFFFF), OBIS_TEXT, st.integers(0, 255))


def attribute_reads():
    """(class, obis, attribute, blocks mode): valid, block-sized and invalid descriptors."""
    return st.tuples(st.one_of(st.sampled_from(READS), st.sampled_from(BLOCK_READS),
                               INVALID_ATTRIBUTES),
                     st.sampled_from(["in-order", "in-order", "repeat", "skip", "abandon"]))


def writes():
    """(class, obis, attribute, A-XDR value octets)."""
    # mostly type-correct values (they get past the type checks, to the meter's logic)
    return st.one_of(*[st.tuples(st.just(w[:3]), st.one_of(w[3], w[3], w[3], VALUES))
                       for w in WRITES],
                     st.tuples(INVALID_ATTRIBUTES, VALUES)).map(lambda t: t[0] + (t[1],))


def actions():
    """(class, obis, method, parameter octets or None)."""
    return st.one_of(*[st.tuples(st.just(m[:3]), st.one_of(m[3], st.none(), VALUES))
                       for m in METHODS]).map(lambda t: t[0] + (t[1],))


# ---- mutation ---------------------------------------------------------------------------------
_TAGS = [0x01, 0x0E, 0x60, 0x62, 0xC0, 0xC1, 0xC3, 0xC4, 0xC8, 0xC9, 0xCB, 0xD8, 0xDB, 0xDC,
         0xFF]
_AXDR_TAGS = [0, 1, 2, 3, 4, 5, 6, 9, 10, 12, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
              26, 27, 255]
_LENGTHS = [b"\x00", b"\x7f", b"\x80", b"\x81\xff", b"\x82\xff\xff", b"\x84\xff\xff\xff\xff",
            b"\x85\x00\x00\x00\x00\x01"]


def _at(data, n):
    return n % len(data) if data else 0


def _tag(data, n):
    return bytes((_TAGS[n % len(_TAGS)],)) + data[1:]


def _choice(data, n):
    return data[:1] + bytes((n % 8,)) + data[2:]


def _length(data, n):
    """Replace an octet that reads as a length (the first < 0x80 after a tag) by a bad one."""
    i = _at(data, n >> 3)
    return data[:i] + _LENGTHS[n % len(_LENGTHS)] + data[i + 1:]


def _obis(data, n):
    """A GET/SET/ACTION descriptor's logical name (octets 5..10) made another."""
    if len(data) < 12 or data[0] not in (0xC0, 0xC1, 0xC3):
        return _flip(data, n)
    return data[:5] + n.to_bytes(6, "big", signed=False)[-6:] + data[11:]


def _class(data, n):
    if len(data) < 5:
        return _flip(data, n)
    return data[:3] + (n & 0xFFFF).to_bytes(2, "big") + data[5:]


def _counter(data, n):
    """A ciphered APDU's invocation counter moved (general-glo: octets 12..15)."""
    if len(data) > 16 and data[0] in (0xDB, 0xDC):
        return data[:12] + n.to_bytes(4, "big") + data[16:]
    return _flip(data, n)


def _type(data, n):
    i = _at(data, n >> 5)
    return data[:i] + bytes((_AXDR_TAGS[n % len(_AXDR_TAGS)],)) + data[i + 1:]


def _depth(data, n):
    """Nest the end of the APDU in arrays of one element, (n % 40) deep."""
    i = _at(data, n >> 6)
    return data[:i] + b"\x01\x01" * (n % 40) + data[i:]


def _truncate(data, n):
    return data[:_at(data, n)]


def _flip(data, n):
    if not data:
        return bytes((n & 0xFF,))
    i = _at(data, n >> 8)
    return data[:i] + bytes((data[i] ^ (n & 0xFF or 1),)) + data[i + 1:]


def _insert(data, n):
    i = _at(data, n >> 8)
    return data[:i] + bytes((n & 0xFF,)) * (1 + (n >> 4) % 4) + data[i:]


MUTATORS = {"tag": _tag, "choice": _choice, "length": _length, "obis": _obis, "class": _class,
            "counter": _counter, "type": _type, "depth": _depth, "truncate": _truncate,
            "flip": _flip, "insert": _insert}


def mutate(apdu, mutations):
    """`apdu` with [(mutator name, number)...] applied in order."""
    data = bytes(apdu)
    for name, n in mutations:
        data = MUTATORS[name](data, n)
    return data


MUTATIONS = st.lists(st.tuples(st.sampled_from(sorted(MUTATORS)), st.integers(0, 2 ** 32 - 1)),
                     min_size=1, max_size=3)

# requests every corpus starts with (plain APDUs)
BUILTIN_SEEDS = [
    bytes.fromhex("c001c10008" "0000010000ff" "0200"),  # GET clock
    bytes.fromhex("c001c1000f" "0000280000ff" "0200"),  # GET object list
    bytes.fromhex("c002c100000001"),  # GET next block 1
    bytes.fromhex("c003c102" "0008" "0000010000ff" "0200" "0003" "0000600100ff" "0200"),
    bytes.fromhex("c101c10008" "0000010000ff" "0200" "090c07ea0105010a000000ffb600"),
    bytes.fromhex("c301c10073" "0000132800ff" "0101" "0914" + "3031323334353637383930313233"
                  "343536373839"),
    bytes.fromhex("c301c10046" "0000600a03ff" "0101" "0f00"),
    bytes.fromhex("6280800100"),  # RLRQ
    bytes.fromhex("601da109060760857405080101be10040e01000000065f1f040000181dffff"),  # AARQ
]


def corpus_from_captures(paths):
    """The plain request APDUs (head-end -> meter, no secret masked) of capture files: the
    wrapper PDUs' payloads, or the information of HDLC I-frames that are not segments."""
    from hil.capture import TO_METER, read_capture, record_octets
    from protocol.errors import ProtocolError
    from protocol.hdlc import decode_frame, strip_llc
    from protocol.wrapper import HEADER_SIZE

    seeds = []
    for path in paths:
        header, records = read_capture(path)
        hdlc = header.get("framing") == "hdlc"
        for record in records:
            octets = record_octets(record)
            if octets is None or record.get("dir") != TO_METER:
                continue
            if not hdlc:
                if len(octets) > HEADER_SIZE:
                    seeds.append(octets[HEADER_SIZE:])
                continue
            try:
                f = decode_frame(octets)
                if f.kind == "I" and f.info and not f.segmented:
                    seeds.append(strip_llc(f.info)[1])
            except ProtocolError:
                continue
    return seeds


def malformed_steps(corpus):
    """Malformed steps: a mutated seed APDU, raw octets, a malformed frame, a forged request."""
    return st.one_of(
        st.builds(lambda seed, m, c: {"op": "raw", "apdu": mutate(seed, m).hex(), "cipher": c},
                  st.sampled_from(corpus), MUTATIONS, st.booleans()),
        st.builds(lambda b, c: {"op": "raw", "apdu": b.hex(), "cipher": c},
                  st.binary(max_size=48), st.booleans()),
        st.builds(lambda k: {"op": "frame", "kind": k}, st.sampled_from(["bad-header",
                                                                          "bad-length"])),
        st.builds(lambda n: {"op": "forge", "ahead": n}, st.sampled_from([1, 2, 1000, 2 ** 31])))


# ---- selective access (hil/fuzz/selective.py) -------------------------------------------------
# profile buffers: the attributes with range (1) and entry (2) selective access
SELECTIVE_READS = [(7, _o(V.LOAD_PROFILE), 2), (7, _o(V.DAILY_PROFILE), 2),
                   (7, _o(V.event_log_obis(0)), 2), (7, _o(V.event_log_obis(3)), 2)]
# attributes that have none (the Blue Book defines no access selector for them)
NOT_SELECTIVE_READS = [(8, _o(V.CLOCK), 2), (3, _o(V.ENERGY_IMPORT), 2),
                       (1, _o(V.SERIAL_NUMBER), 2), (70, _o(V.DISCONNECT_CONTROL), 2),
                       (7, _o(V.LOAD_PROFILE), 3), (7, _o(V.LOAD_PROFILE), 7),
                       (7, _o(V.LOAD_PROFILE), 1)]
# seconds from the meter's clock: inside, at and beyond its history, inverted pairs, far off
_OFFSETS = [-40 * 86400, -86400, -3600, -900, -1, 0, 1, 900, 86400, -(10 ** 10), 10 ** 10]
# entry and column numbers: 0 (= the last), the first ones, and the largest the types hold
_ENTRIES = [0, 1, 2, 3, 5, 96, 1000, 0xFFFF, 0xFFFFFFFF]
_COLUMNS = [0, 1, 2, 3, 5, 6, 0xFFFF]

RANGE_SPECS = st.fixed_dictionaries({
    "kind": st.just("range"), "from_s": st.sampled_from(_OFFSETS),
    "to_s": st.sampled_from(_OFFSETS),
    "bound": st.sampled_from(["datetime", "datetime", "unix", "no-deviation", "wrong-type"]),
    "restrict": st.sampled_from(["clock", "clock", "clock", "other"]),
    "columns": st.lists(st.integers(0, 6), max_size=3)})
ENTRY_SPECS = st.fixed_dictionaries({
    "kind": st.just("entry"), "from": st.sampled_from(_ENTRIES), "to": st.sampled_from(_ENTRIES),
    "from_col": st.sampled_from(_COLUMNS), "to_col": st.sampled_from(_COLUMNS)})
# malformed parameters: any A-XDR value (wrong types, a structure of the wrong size), a deep
# nesting, raw octets that are no A-XDR at all
PARAMS_SPECS = st.one_of(VALUES, st.integers(1, 40).map(lambda n: b"\x02\x01" * n + b"\x00"),
                         st.binary(max_size=12)).map(lambda b: {"kind": "params", "hex": b.hex()})
_UNKNOWN_SELECTORS = [0, 3, 4, 0x7F, 0xFF]


def _selector_for(spec):
    defined = {"range": 1, "entry": 2}.get(spec["kind"], 1)
    # mostly the selector the parameters are written for; else the other one, or one the
    # class does not define
    return st.sampled_from([defined] * 6 + [3 - defined] + _UNKNOWN_SELECTORS)


def selective_reads():
    """(class, obis, attribute, has selective access, selector, spec) of a select step."""
    specs = st.one_of(RANGE_SPECS, RANGE_SPECS, ENTRY_SPECS, ENTRY_SPECS, PARAMS_SPECS)
    targets = st.one_of(st.sampled_from(SELECTIVE_READS).map(lambda d: d + (True,)),
                        st.sampled_from(SELECTIVE_READS).map(lambda d: d + (True,)),
                        st.sampled_from(NOT_SELECTIVE_READS).map(lambda d: d + (False,)),
                        INVALID_ATTRIBUTES.map(lambda d: d + (False,)))
    return st.tuples(targets, specs).flatmap(
        lambda t: st.tuples(st.just(t[0]), _selector_for(t[1]), st.just(t[1]))).map(
        lambda t: t[0] + (t[1], t[2]))

# (class, obis) of every object the fuzzer addresses on purpose (coverage names only these)
KNOWN_OBJECTS = frozenset(d[:2] for d in READS + BLOCK_READS + WRITES + METHODS
                          + SELECTIVE_READS + NOT_SELECTIVE_READS)
