"""The APDU base class: each APDU is a dataclass with a declarative construct `SPEC`."""

import construct as cs

from protocol.apdu.common import build, parse
from protocol.errors import ProtocolError


class Apdu:
    """Base of every APDU class.

    Subclasses set `TAG` (first octet), optionally `CHOICE` (second octet for xDLMS
    request/response types) and `SPEC`: a construct Struct describing the octets after the
    tag/choice, whose field names are the dataclass fields. `SPEC` is compiled on first use.
    """

    __slots__ = ()
    TAG = None
    CHOICE = None
    SPEC = None
    _compiled = None

    @classmethod
    def _grammar(cls, end):
        """The APDU's whole grammar: its tag (and choice) octets, `SPEC`'s fields, then `end`."""
        header = [cs.Const(bytes((cls.TAG,)))]
        if cls.CHOICE is not None:
            header.append(cs.Const(bytes((cls.CHOICE,))))
        return cs.Struct(*[("_h%d" % i) / h for i, h in enumerate(header)],
                         *cls.SPEC.subcons, end)

    @classmethod
    def _spec(cls):
        compiled = cls.__dict__.get("_compiled_spec")
        if compiled is None:
            full = cls._grammar(cs.Terminated)
            try:
                compiled = full.compile()
            except Exception:  # pragma: no cover - fall back to the interpreted grammar
                compiled = full
            cls._compiled_spec = compiled
        return compiled

    # Optional hand-written fast paths for the hottest APDUs. They return None whenever the
    # input is anything but the plain common case, and the construct grammar then decides
    # (tests/test_fuzz_apdu.py proves both paths give the same results).
    _fast_decode = None
    _fast_encode = None

    @classmethod
    def decode(cls, data):
        """Decode this APDU from bytes filling all of `data` (DecodeError otherwise)."""
        if type(data) is not bytes:
            data = bytes(data)
        fast = cls._fast_decode
        if fast is not None:
            try:
                obj = fast(data)
            except ProtocolError:
                obj = None
            if obj is not None:
                return obj
        return cls.decode_with_grammar(data)

    @classmethod
    def prefix_length(cls, data):
        """How many octets at the start of `data` one APDU of this class fills (what follows
        belongs to nobody: see `protocol.apdu.decode_apdu_prefix`). DecodeError if none."""
        spec = cls.__dict__.get("_prefix_spec")
        if spec is None:
            spec = cls._prefix_spec = cls._grammar("_end" / cs.Tell)
        return parse(spec, bytes(data), cls.__name__)["_end"]

    @classmethod
    def decode_with_grammar(cls, data):
        """Decode with the declarative construct grammar only (the reference path)."""
        c = parse(cls._spec(), bytes(data), cls.__name__)
        return cls(**{name: c[name] for name in cls._field_names()})

    def encode(self):
        """The APDU's octets."""
        fast = self._fast_encode
        if fast is not None:
            raw = fast()
            if raw is not None:
                return raw
        return self.encode_with_grammar()

    def encode_with_grammar(self):
        """Encode with the declarative construct grammar only (the reference path)."""
        return build(self._spec(), {name: getattr(self, name) for name in self._field_names()},
                     type(self).__name__)

    to_bytes = encode

    @classmethod
    def _field_names(cls):
        names = cls.__dict__.get("_names")
        if names is None:
            names = tuple(sc.name for sc in cls.SPEC.subcons if sc.name)
            cls._names = names
        return names
