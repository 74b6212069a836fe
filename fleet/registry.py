"""The fleet's registry: a CSV file the head-end imports (`bijli headend import FILE`), one row
per meter, header row first and the meter id in the first column::

    meter_id,address,physical_address,feeder,segment,contact,key_ref
    BJ00000001,127.1.0.1:4059,16,F01,S1,+91-90000-00000,default          (its own address)
    BJ00000001,tcp:127.0.0.1:4059/16,16,F01,S1,+91-90000-00000,default   (via the concentrator)

`address` is what a client connects to: the meter's own HOST:PORT, or the concentrator's
"tcp:HOST:PORT" followed by "/" and the meter's physical device address (the gateway path,
`protocol.gateway.parse_route`). `physical_address` repeats the latter in its own column.
"""
import csv
import os

from protocol.gateway import parse_route

HEADER = ("meter_id", "address", "physical_address", "feeder", "segment", "contact", "key_ref")


class RegistryFileError(ValueError):
    """A registry file is unreadable or lacks the meter asked for (the message says which)."""


def gateway_path(gateway_address, physical_address):
    """The address of a meter behind the concentrator at "HOST:PORT"."""
    return "tcp:%s/%d" % (gateway_address, physical_address)


def rows(fleet, addresses=None, gateway_address=None):
    """The registry rows (dicts) of `fleet`'s meters: by their own `addresses` ({meter id:
    "HOST:PORT"}) when given, else by the gateway path through `gateway_address`."""
    for meter_id in fleet.meter_ids():
        info = fleet.info(meter_id)
        phys = int(info["physical_address"])
        if addresses is not None and meter_id in addresses:
            address = addresses[meter_id]
        elif gateway_address is not None:
            address = gateway_path(gateway_address, phys)
        else:
            address = ""
        yield {"meter_id": meter_id, "address": address, "physical_address": phys,
               "feeder": info.get("feeder", ""), "segment": info.get("segment", ""),
               "contact": info.get("contact", ""),
               "key_ref": info.get("key_ref", "")}


def write(path, registry_rows):
    """Write the rows to `path` (replaced at once: a reader never sees half a file); returns
    how many were written."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    n = 0
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, HEADER, extrasaction="ignore")
        w.writeheader()
        for row in registry_rows:
            w.writerow(row)
            n += 1
    os.replace(tmp, path)
    return n


def lookup(path, meter_id):
    """(host, port, GatewayRoute or None) of `meter_id` in the registry at `path`."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise RegistryFileError("%s is empty (a header row is expected)" % path)
            names = [h.strip().lower() for h in header]
            if "address" not in names:
                raise RegistryFileError("%s has no address column" % path)
            col = names.index("address")
            for line, row in enumerate(reader, 2):
                if row and row[0].strip() == meter_id:
                    try:
                        return parse_route(row[col])
                    except (IndexError, ValueError) as exc:
                        raise RegistryFileError("%s line %d: %s" % (path, line, exc)) from None
    except OSError as exc:
        raise RegistryFileError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except csv.Error as exc:
        raise RegistryFileError("%s: %s" % (path, exc)) from None
    raise RegistryFileError("meter %s is not in %s" % (meter_id, path))
