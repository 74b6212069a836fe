"""COSEM data values as typed JSON and as text: what a user types for `bijli client write` /
`action`, and how `--trace` and `bijli decode` show data.

Typed JSON names the DLMS type of every value, so nothing is guessed::

    {"long-unsigned": 300}                {"octet-string": "0102ab"}
    {"visible-string": "BJ00000001"}      {"bit-string": "0101"}
    {"boolean": true}                     {"null-data": null}
    {"date-time": "2026-01-05T09:00:00+05:30"}   (or 24 hex digits)
    {"structure": [{"long": -5}, {"enum": 30}]}  {"array": [{"unsigned": 1}, {"unsigned": 2}]}

`from_text(type_name, text)` takes one value as the command line gives it: the number, hex,
text or ISO time of a simple type; a JSON list of typed items for `array` / `structure`; a whole
typed JSON document for `json`; and `datetime`, the 12-octet COSEM date-time octet-string that
the clock and capture times use, from ISO 8601. Every error is an EncodeError with a clear
message.
"""
import datetime as _dt
import json

from protocol import axdr
from protocol.cosem_types import CosemDate, CosemDateTime, CosemTime
from protocol.errors import DecodeError, EncodeError

NAME_TO_TAG = {name: tag for tag, name in axdr.TAG_NAMES.items()}
_INT_TAGS = {axdr.INTEGER, axdr.LONG, axdr.DOUBLE_LONG, axdr.LONG64, axdr.UNSIGNED,
             axdr.LONG_UNSIGNED, axdr.DOUBLE_LONG_UNSIGNED, axdr.LONG64_UNSIGNED, axdr.ENUM,
             axdr.BCD}
DATETIME_OCTETS = "datetime"  # pseudo type: octet-string(12) from ISO 8601
TEXT_TYPES = sorted(set(NAME_TO_TAG) - {"compact-array", "dont-care"}) + [DATETIME_OCTETS,
                                                                          "json"]


def _hex(text, what):
    try:
        return bytes.fromhex(str(text).replace(" ", "").replace(":", ""))
    except ValueError:
        raise EncodeError("%s: %r is not hex" % (what, text)) from None


def _iso(text, what):
    try:
        t = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise EncodeError("%s: %r is not an ISO 8601 time (e.g. 2026-01-05T09:00+05:30)"
                          % (what, text)) from None
    if t.tzinfo is None:
        raise EncodeError("%s: give the time zone, e.g. 2026-01-05T09:00+05:30" % what)
    return CosemDateTime.from_datetime(t)


def _int(value, what):
    if isinstance(value, bool):
        raise EncodeError("%s: expected an integer, got %r" % (what, value))
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        raise EncodeError("%s: %r is not an integer" % (what, value)) from None


def _bool(value, what):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise EncodeError("%s: %r is not a boolean (true/false)" % (what, value))


def _octets_type(cls, size, value, what):
    if isinstance(value, str) and len(value.replace(" ", "")) == 2 * size and \
            all(c in "0123456789abcdefABCDEF " for c in value):
        return cls(_hex(value, what))
    if cls is CosemDateTime:
        return _iso(value, what)
    try:
        if cls is CosemDate:
            return CosemDate.from_date(_dt.date.fromisoformat(str(value)))
        return CosemTime.from_time(_dt.time.fromisoformat(str(value)))
    except ValueError:
        raise EncodeError("%s: %r is neither %d hex octets nor ISO 8601"
                          % (what, value, size)) from None


def _simple(tag, value, what):
    """The axdr value of simple type `tag` from a JSON scalar or command-line text."""
    try:
        if tag in _INT_TAGS:
            number = _int(value, what)
            try:
                return axdr.typed(tag, number)
            except EncodeError:
                raise EncodeError("%s: %d does not fit %s" % (what, number,
                                                              axdr.TAG_NAMES[tag])) from None
        if tag == axdr.BOOLEAN:
            return _bool(value, what)
        if tag == axdr.NULL_DATA:
            if value not in (None, "", "null"):
                raise EncodeError("%s: null-data takes no value" % what)
            return None
        if tag == axdr.OCTET_STRING:
            return _hex(value, what)
        if tag == axdr.VISIBLE_STRING:
            text = str(value)
            try:
                text.encode("latin-1")
            except UnicodeError:
                raise EncodeError("%s: a visible-string holds one octet per character; use "
                                  "utf8-string" % what) from None
            return text
        if tag == axdr.UTF8_STRING:
            return axdr.Utf8String(str(value))
        if tag == axdr.BIT_STRING:
            return axdr.BitString(str(value))
        if tag in (axdr.FLOAT32, axdr.FLOAT64):
            return axdr.typed(tag, float(value))
        if tag == axdr.DATE_TIME:
            return _octets_type(CosemDateTime, 12, value, what)
        if tag == axdr.DATE:
            return _octets_type(CosemDate, 5, value, what)
        if tag == axdr.TIME:
            return _octets_type(CosemTime, 4, value, what)
    except (ValueError, TypeError, DecodeError) as exc:
        raise EncodeError("%s: %s" % (what, exc)) from None
    raise EncodeError("%s: type %s cannot be given as a value" % (what, axdr.TAG_NAMES[tag]))


def from_json(doc, what="value"):
    """The axdr value of a typed JSON document {"type-name": value}."""
    if not isinstance(doc, dict) or len(doc) != 1:
        raise EncodeError('%s: a typed value is one {"type": value} object, e.g. '
                          '{"long-unsigned": 5}, not %s' % (what, json.dumps(doc)[:60]))
    (name, value), = doc.items()
    if name == DATETIME_OCTETS:
        return _iso(value, what).raw
    tag = NAME_TO_TAG.get(name)
    if tag is None or name in ("compact-array", "dont-care"):
        raise EncodeError("%s: unknown type %r (one of: %s)" % (what, name, ", ".join(TEXT_TYPES)))
    if tag in (axdr.ARRAY, axdr.STRUCTURE):
        if not isinstance(value, list):
            raise EncodeError("%s: %s takes a JSON list of typed values" % (what, name))
        items = [from_json(x, "%s[%d]" % (what, i)) for i, x in enumerate(value)]
        return axdr.typed(tag, items)
    if isinstance(value, (list, dict)):
        raise EncodeError("%s: %s takes a single value" % (what, name))
    return _simple(tag, value, what)


def from_text(type_name, text):
    """The axdr value of `text` given as DLMS type `type_name` (see the module doc)."""
    what = "value for --type %s" % type_name
    if type_name == "json" or NAME_TO_TAG.get(type_name) in (axdr.ARRAY, axdr.STRUCTURE):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise EncodeError("%s: not valid JSON (%s)" % (what, exc.msg)) from None
        return from_json(doc if type_name == "json" else {type_name: doc}, what)
    if type_name == DATETIME_OCTETS:
        return _iso(text, what).raw
    tag = NAME_TO_TAG.get(type_name)
    if tag is None or type_name in ("compact-array", "dont-care"):
        raise EncodeError("unknown --type %r (one of: %s)" % (type_name, ", ".join(TEXT_TYPES)))
    return _simple(tag, text, what)


def to_json(value):
    """Typed JSON of an axdr value (the inverse of `from_json` for what it accepts)."""
    if isinstance(value, axdr.CompactArray):
        return {"compact-array": axdr.encode(value).hex()}
    tag = axdr.tag_of(value)
    name = axdr.TAG_NAMES.get(tag, str(tag))
    if tag in (axdr.ARRAY, axdr.STRUCTURE):
        return {name: [to_json(v) for v in value]}
    if isinstance(value, (bytes, bytearray)):
        return {name: bytes(value).hex()}
    if isinstance(value, (CosemDateTime, CosemDate, CosemTime)):
        plain = axdr.to_python(value)
        return {name: plain.isoformat() if hasattr(plain, "isoformat") else value.raw.hex()}
    if value is axdr.DONT_CARE:
        return {name: None}
    if isinstance(value, float):
        return {name: float(value)}
    if isinstance(value, bool) or value is None:
        return {name: value}
    if isinstance(value, int):
        return {name: int(value)}
    return {name: str(value)}
