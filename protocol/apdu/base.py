"""The APDU base class: each APDU is a dataclass with a declarative construct `SPEC`."""

import construct as cs

from protocol.apdu.common import build, parse


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
    def _spec(cls):
        compiled = cls.__dict__.get("_compiled_spec")
        if compiled is None:
            header = [cs.Const(bytes((cls.TAG,)))]
            if cls.CHOICE is not None:
                header.append(cs.Const(bytes((cls.CHOICE,))))
            full = cs.Struct(*[("_h%d" % i) / h for i, h in enumerate(header)],
                             *cls.SPEC.subcons, cs.Terminated)
            try:
                compiled = full.compile()
            except Exception:  # pragma: no cover - fall back to the interpreted grammar
                compiled = full
            cls._compiled_spec = compiled
        return compiled

    @classmethod
    def decode(cls, data):
        """Decode this APDU from bytes filling all of `data` (DecodeError otherwise)."""
        c = parse(cls._spec(), bytes(data), cls.__name__)
        return cls(**{name: c[name] for name in cls._field_names()})

    def encode(self):
        """The APDU's octets."""
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
