"""Profile generic (IC 7): buffer with range/entry selective access over a row source.

A profile is bound to a *source* that knows its rows (tuples, oldest first):

    source.count() -> int                      entries in use
    source.capacity() -> int                   profile_entries
    source.rows(start, stop) -> [row]          by 0-based index range
    source.rows_by_time(t_from, t_to) -> [row] rows whose time column is in [t_from, t_to]

and to a list of *columns*: `(capture_definition_bytes, kind, index)`: the value is
`row[index]`, encoded as `kind` (COL_DT date-time octet-string, COL_U32 double-long-unsigned,
COL_I32 double-long, COL_U16 long-unsigned; out-of-range values are clamped). Column 0 is
always the time (Clock 0.0.1.0.0.255 attribute 2), the only column a range descriptor may
restrict on. Rows are written with fixed widths into one preallocated buffer, so encoding a
buffer allocates little more than its own bytes (this matters on a board's heap).

Selective access (access selector 1 = range_descriptor, 2 = entry_descriptor) comes as tagged
data `(tag, value)`:
- range: structure{ restricting_object structure{class_id, logical_name, attribute_index,
  data_index}, from_value, to_value, selected_values array of capture definitions }
  with from/to as 12-byte date-time octet-strings (or double-long-unsigned Unix seconds);
- entry: structure{ from_entry, to_entry (0 = last), from_selected_value,
  to_selected_value (0 = last) }, all 1-based.
An empty `selected_values` means all columns.
"""
from firmware import timeutil
from firmware.cosem import base, dtime
from firmware.dlms import axdr as D

CLOCK_OBIS = b"\x00\x00\x01\x00\x00\xff"

SORT_FIFO = 1

COL_DT = 0
COL_U32 = 1
COL_I32 = 2
COL_U16 = 3
_COL_SIZE = (14, 5, 5, 3)


def capture_def(class_id, obis, attr, data_index=0):
    """A-XDR capture_object_definition structure."""
    return D.structure(D.u16(class_id), D.octets(obis), D.i8(attr), D.u16(data_index))


def _as_list(tv, n=None):
    if tv is None or tv[0] != D.STRUCTURE and tv[0] != D.ARRAY:
        raise ValueError("structure expected")
    items = tv[1]
    if n is not None and len(items) != n:
        raise ValueError("structure of %d elements expected" % n)
    return items


def _time_value(tv, tz):
    tag, v = tv
    if tag == D.OCTET_STRING:
        return dtime.decode(v, tz)
    if tag in D.INT_TAGS:
        return v
    raise ValueError("range bound must be a date-time or an integer")


def _def_key(tv):
    """(class_id, obis, attr, data_index) of a decoded capture definition."""
    items = _as_list(tv, 4)
    return (D.as_int(items[0]), bytes(items[1][1]), D.as_int(items[2]), D.as_int(items[3]))


_ATTRS = {}  # read level -> the attributes of every profile readable from it (one per process)


def _attrs(read_level):
    """The IC 7 attributes for `read_level`: their getters reach the object through `o`, so
    every profile (event logs, load and daily profiles) of every meter shares one tuple."""
    attrs = _ATTRS.get(read_level)
    if attrs is None:
        A = base.Attr
        attrs = _ATTRS[read_level] = (
            A(2, base.RAW, read_level, get=_get_buffer, selectors=(1 << 1) | (1 << 2)),
            A(3, base.RAW, read_level, get=_get_capture_objects),
            A(4, D.DOUBLE_LONG_UNSIGNED, read_level, get=lambda o: o.capture_period),
            A(5, D.ENUM, read_level, get=lambda o: SORT_FIFO),
            A(6, base.RAW, read_level, get=lambda o: capture_def(0, b"\x00" * 6, 0, 0)),
            A(7, D.DOUBLE_LONG_UNSIGNED, read_level, get=lambda o: o.source.count()),
            A(8, D.DOUBLE_LONG_UNSIGNED, read_level, get=lambda o: o.source.capacity()),
        )
    return attrs


class ProfileGeneric(base.CosemObject):
    """IC 7 object over a row source; read levels given for buffer and metadata."""

    def __init__(self, obis, source, columns, capture_period, read_level, tz_offset_s,
                 ctx=None, name=""):
        self.source = source
        self.columns = columns
        self.capture_period = capture_period
        self.tz = tz_offset_s
        base.CosemObject.__init__(self, 7, obis, 1, _attrs(read_level), (), ctx, name)

    def column_keys(self):
        """(class_id, obis, attr, data_index) of every column, in order."""
        out = []
        for c in self.columns:
            out.append(_def_key(D.decode_all(c[0])))
        return out

    def encode_rows(self, rows, first_col=0, last_col=None):
        """A-XDR array of structures for rows, columns first_col..last_col (inclusive)."""
        stop = len(self.columns) if last_col is None else last_col + 1
        return self.encode_rows_cols(rows, list(range(first_col, stop)))

    def encode_rows_cols(self, rows, idx):
        """A-XDR array of structures for rows with the columns at indexes idx."""
        cols = [self.columns[i] for i in idx]
        rowlen = 2
        for c in cols:
            rowlen += _COL_SIZE[c[1]]
        head = D.array_header(len(rows))
        h = len(head)
        buf = bytearray(h + len(rows) * rowlen)
        buf[0:h] = head
        pos = h
        ncols = len(cols)
        dev = -(self.tz // 60)
        day = [None, None, 0, 0, 0, 0]  # the local day of the last date written: _put_dt
        for r in rows:
            buf[pos] = 2
            buf[pos + 1] = ncols
            pos += 2
            for c in cols:
                kind = c[1]
                v = r[c[2]]
                if kind == COL_DT:
                    _put_dt(buf, pos, v + self.tz, dev, day)
                    pos += 14
                elif kind == COL_U16:
                    if v < 0:
                        v = 0
                    elif v > 0xFFFF:
                        v = 0xFFFF
                    buf[pos] = 18
                    buf[pos + 1] = v >> 8
                    buf[pos + 2] = v & 0xFF
                    pos += 3
                else:
                    if kind == COL_U32:
                        buf[pos] = 6
                        if v < 0:
                            v = 0
                        elif v > 0xFFFFFFFF:
                            v = 0xFFFFFFFF
                    else:
                        buf[pos] = 5
                        if v < -0x80000000:
                            v = -0x80000000
                        elif v > 0x7FFFFFFF:
                            v = 0x7FFFFFFF
                    buf[pos + 1] = (v >> 24) & 0xFF
                    buf[pos + 2] = (v >> 16) & 0xFF
                    buf[pos + 3] = (v >> 8) & 0xFF
                    buf[pos + 4] = v & 0xFF
                    pos += 5
        return buf

    def select(self, selector, params):
        """A-XDR buffer for a selective access, or an int data-access-result."""
        if selector == 1:
            items = _as_list(params, 4)
            key = _def_key(items[0])
            if key[0] != 8 or key[1] != CLOCK_OBIS or key[2] != 2:
                return base.OTHER_REASON
            t_from = _time_value(items[1], self.tz)
            t_to = _time_value(items[2], self.tz)
            rows = self.source.rows_by_time(t_from, t_to) if t_to >= t_from else []
            sel = _as_list(items[3])
            if not sel:
                return self.encode_rows(rows)
            keys = self.column_keys()
            idx = []
            for s in sel:
                k = _def_key(s)
                if k not in keys:
                    return base.OTHER_REASON
                idx.append(keys.index(k))
            return self.encode_rows_cols(rows, idx)
        if selector == 2:
            items = _as_list(params, 4)
            fe = D.as_int(items[0])
            te = D.as_int(items[1])
            fc = D.as_int(items[2])
            tc = D.as_int(items[3])
            n = self.source.count()
            if fe < 1:
                fe = 1
            if te == 0 or te > n:
                te = n
            rows = self.source.rows(fe - 1, te) if te >= fe else []
            ncol = len(self.columns)
            if fc < 1:
                fc = 1
            if tc == 0 or tc > ncol:
                tc = ncol
            if fc > tc:
                return base.OTHER_REASON
            return self.encode_rows(rows, fc - 1, tc - 1)
        return base.OTHER_REASON


def _put_dt(buf, pos, local_t, dev, day):
    """Write a date-time octet-string (14 bytes) for local seconds local_t at buf[pos].
    `day` = [start, end, year, month, day, weekday] of the local day written last (rows are
    in time order, mostly on one day): within it only the second of the day is worked out
    (a full date from Unix seconds is several big-int operations on a 32-bit port)."""
    if day[0] is None or not day[0] <= local_t < day[1]:
        y, mo, d, hh, mm, ss, wd = timeutil.to_fields(local_t)
        day[0] = local_t - (hh * 3600 + mm * 60 + ss)
        day[1] = day[0] + 86400
        day[2] = y
        day[3] = mo
        day[4] = d
        day[5] = wd
    sod = local_t - day[0]
    y = day[2]
    buf[pos] = 9
    buf[pos + 1] = 12
    buf[pos + 2] = y >> 8
    buf[pos + 3] = y & 0xFF
    buf[pos + 4] = day[3]
    buf[pos + 5] = day[4]
    buf[pos + 6] = day[5]
    buf[pos + 7] = sod // 3600
    buf[pos + 8] = sod // 60 % 60
    buf[pos + 9] = sod % 60
    buf[pos + 10] = 0
    buf[pos + 11] = (dev >> 8) & 0xFF
    buf[pos + 12] = dev & 0xFF
    buf[pos + 13] = 0


def _get_buffer(o, selector, params):
    if selector:
        return o.select(selector, params)
    return o.encode_rows(o.source.rows(0, None))


def _get_capture_objects(o):
    return D.array([c[0] for c in o.columns])


class ListSource:
    """A row source over a plain list (tests, small tables); time is row[time_index]."""

    def __init__(self, rows, capacity, time_index=0):
        self.list = rows
        self.cap = capacity
        self.ti = time_index

    def count(self):
        """Rows in use."""
        return len(self.list)

    def capacity(self):
        """Maximum rows."""
        return self.cap

    def rows(self, start, stop):
        """Rows by index range."""
        return self.list[start:stop]

    def rows_by_time(self, t_from, t_to):
        """Rows with t_from <= time <= t_to."""
        ti = self.ti
        return [r for r in self.list if t_from <= r[ti] <= t_to]
