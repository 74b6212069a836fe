"""The meter registry: who the meters are and how to reach them.

Import from CSV (a header row; the first column is the meter id whatever its name) or JSON (a
list of objects, or {"meters": [...]}). Known fields, with accepted header aliases::

    meter_id  address (HOST:PORT, tcp:HOST:PORT/PHYSICAL via a concentrator)  client_sap  key_ref  feeder  segment  region
    tariff  contact

Other columns of a utility's export are ignored and reported. An import is one transaction:
a bad row (its line and field named) imports nothing. Re-importing a meter updates its
fields; its vending counters and DLMS invocation counter are never touched.
"""
import csv
import io
import json

from firmware import token_codec as tc
from headend.clock import now as headend_now
from protocol import gateway

FIELDS = ("meter_id", "address", "client_sap", "key_ref", "feeder", "segment", "region",
          "tariff", "contact")
ALIASES = {
    "id": "meter_id", "meter": "meter_id", "serial": "meter_id", "meter_serial": "meter_id",
    "tcp": "address", "host": "address", "endpoint": "address",
    "sap": "client_sap", "key": "key_ref", "keys": "key_ref", "key_set": "key_ref",
    "consumer_contact": "contact", "phone": "contact", "mobile": "contact",
}
UTILITY_SAP = 0x30


class RegistryError(Exception):
    """A registry file or row is unusable (the message names the line and field)."""


def _norm_header(name):
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    return ALIASES.get(key, key)


def _row(raw, where):
    """A clean meter dict from one record (strings or JSON values)."""
    out = {}
    for k, v in raw.items():
        if k not in FIELDS:
            continue
        out[k] = "" if v is None else v
    mid = out.get("meter_id")
    if not isinstance(mid, str) or not mid.strip():
        raise RegistryError("%s: meter id missing" % where)
    try:
        out["meter_id"] = tc.meter_id_bytes(mid.strip()).decode()
    except ValueError as e:
        raise RegistryError("%s: meter id %r: %s" % (where, mid, e)) from None
    sap = out.get("client_sap", "")
    if sap in ("", None):
        sap = UTILITY_SAP
    try:
        sap = int(sap, 0) if isinstance(sap, str) else sap
        if isinstance(sap, bool) or not isinstance(sap, int) or not 1 <= sap <= 0x7F:
            raise ValueError
    except ValueError:
        raise RegistryError("%s: client_sap must be 1..127 (e.g. 48 or 0x30), got %r"
                            % (where, out.get("client_sap"))) from None
    out["client_sap"] = sap
    for k in FIELDS[3:] + ("address",):
        v = out.get(k, "")
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise RegistryError("%s: %s must be text" % (where, k))
        out[k] = str(v).strip()
    if not out["key_ref"]:
        out["key_ref"] = "default"
    if out["address"]:
        parse_route(out["address"], where)
    return out


def parse_route(address, where="address"):
    """(host, port, GatewayRoute or None) of a meter address: 'HOST:PORT' or 'tcp:HOST:PORT'
    (the meter itself), or 'tcp:HOST:PORT/PHYSICAL' (behind the data concentrator at
    HOST:PORT, physical device address PHYSICAL: `bijli fleet serve --registry`); RegistryError."""
    text = address[4:] if address.startswith("tcp:") else address
    host, sep, port = text.partition("/")[0].rpartition(":")
    try:
        if not sep or not host or not port.isdigit():  # the port is never implied here
            raise ValueError
        return gateway.parse_route(address)
    except ValueError:
        raise RegistryError("%s: address must be HOST:PORT or tcp:HOST:PORT/PHYSICAL (a meter "
                            "behind a concentrator), got %r" % (where, address)) from None


def parse_address(address, where="address"):
    """(host, port) of a meter reached directly ('HOST:PORT' or 'tcp:HOST:PORT'); RegistryError
    (also for a meter behind a concentrator: use parse_route)."""
    host, port, route = parse_route(address, where)
    if route is not None:
        raise RegistryError("%s: %r is behind a data concentrator (this operation reaches "
                            "meters directly only)" % (where, address))
    return host, port


def read_file(path):
    """(rows, ignored column names) from a CSV or JSON registry file."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except OSError as e:
        raise RegistryError("cannot read %s: %s" % (path, e.strerror)) from None
    except UnicodeDecodeError:
        raise RegistryError("%s is not UTF-8 text" % path) from None
    if path.lower().endswith(".json") or text.lstrip().startswith(("[", "{")):
        return parse_json(text, path)
    return parse_csv(text, path)


def parse_csv(text, name="CSV"):
    """(rows, ignored columns) from CSV text with a header row; meter id first."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise RegistryError("%s is empty (a header row is needed)" % name) from None
    except csv.Error as e:
        raise RegistryError("%s line 1: %s" % (name, e)) from None
    names = [_norm_header(h) for h in header]
    if not names or not names[0]:
        raise RegistryError("%s line 1: the first column must be the meter id" % name)
    names[0] = "meter_id"
    ignored = sorted({h for h, n in zip(header, names) if n not in FIELDS})
    rows = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            where = "%s line %d" % (name, reader.line_num)
            if len(values) > len(names):
                raise RegistryError("%s: %d fields, the header has %d"
                                    % (where, len(values), len(names)))
            rows.append(_row(dict(zip(names, values)), where))
    except csv.Error as e:
        raise RegistryError("%s line %d: %s" % (name, reader.line_num, e)) from None
    return rows, ignored


def parse_json(text, name="JSON"):
    """(rows, ignored fields) from a JSON list of meter objects (or {"meters": [...]})."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise RegistryError("%s is not valid JSON (line %s)" % (name, getattr(e, "lineno", "?"))) from None
    if isinstance(doc, dict):
        doc = doc.get("meters")
    if not isinstance(doc, list):
        raise RegistryError("%s: expected a list of meters (or {\"meters\": [...]})" % name)
    rows, ignored = [], set()
    for i, item in enumerate(doc):
        where = "%s meter #%d" % (name, i + 1)
        if not isinstance(item, dict):
            raise RegistryError("%s: must be an object" % where)
        norm = {_norm_header(k): v for k, v in item.items()}
        ignored |= {k for k, n in zip(item, norm) if n not in FIELDS}
        rows.append(_row(norm, where))
    return rows, sorted(ignored)


def upsert(db, rows, clock=headend_now):
    """Insert or update meters in one transaction; returns (added, updated)."""
    seen = set()
    for r in rows:
        if r["meter_id"] in seen:
            raise RegistryError("meter %s appears twice in the file" % r["meter_id"])
        seen.add(r["meter_id"])
    now = clock()
    added = updated = 0
    with db.transaction():
        for r in rows:
            exists = db.one("SELECT 1 FROM meters WHERE meter_id=?", (r["meter_id"],))
            values = [r[k] for k in FIELDS[1:]]
            if exists:
                db.execute("UPDATE meters SET %s, updated_at=? WHERE meter_id=?"
                           % ", ".join("%s=?" % k for k in FIELDS[1:]),
                           values + [now, r["meter_id"]])
                updated += 1
            else:
                db.execute("INSERT INTO meters (%s, created_at, updated_at) VALUES (%s)"
                           % (", ".join(FIELDS), ", ".join("?" * (len(FIELDS) + 2))),
                           [r["meter_id"]] + values + [now, now])
                added += 1
    return added, updated


def get(db, meter_id):
    """The meter's registry row as a dict, or None."""
    rows = db.dicts("SELECT %s FROM meters WHERE meter_id=?" % ", ".join(FIELDS), (meter_id,))
    return rows[0] if rows else None


def reserve_invocation_counters(db, meter_id, count):
    """Reserve `count` DLMS invocation counters of the utility association with this meter;
    returns the first. Committed before use: a crash wastes counters, never reuses one (the
    meter refuses a counter it has seen)."""
    with db.transaction():  # one atomic statement: two workers never get the same block
        after = db.scalar("UPDATE meters SET dlms_ic_next = dlms_ic_next + ? WHERE meter_id=? "
                          "RETURNING dlms_ic_next", (count, meter_id))
    if after is None:
        raise RegistryError("unknown meter %s" % meter_id)
    return after - count


def reserve_sessions(db, meter_ids, ic_block):
    """For a claim: reserve `ic_block` DLMS invocation counters on each meter (one session
    each) and read how to reach it, in one statement of the caller's transaction; returns
    {meter_id: (address, client_sap, key_ref, first reserved counter)}."""
    mids = sorted(set(meter_ids))
    if not mids:
        return {}
    out = {}
    for mid, after, address, sap, key_ref in db.all(
            "UPDATE meters SET dlms_ic_next = dlms_ic_next + ? WHERE meter_id IN (%s) "
            "RETURNING meter_id, dlms_ic_next, address, client_sap, key_ref"
            % ", ".join("?" * len(mids)), [ic_block] + mids):
        out[mid] = (address, sap, key_ref, after - ic_block)
    return out
