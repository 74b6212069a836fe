"""`bijli demo`: an emulated meter and a head-end session against it, end to end, no setup.

What it shows (docs/scenarios.md S2/S4):
1. An emulated meter starts in-process and serves DLMS on a free loopback TCP port; the
   head-end associates as the utility client (HLS-GMAC, suite 0, INSECURE demo keys), sets
   itself as the push destination, reads the meter id, clock, energy (with its scaler_unit)
   and balance.
2. A day at high clock speed with a 1 kW load: the balance runs out, the low-credit and
   zero alerts are pushed, and the meter's own policy waits one day of grace and cuts the
   supply inside the 10:00-13:00 window.
3. The consumer pays: the head-end vends a 20-digit token and delivers it through the Token
   gateway (IC 115 `enter`); the balance rises and the meter reconnects itself at once.
   Delivering the same token again is refused as "used".
4. The consumer's app reads balance and last recharge from the meter itself with no keys
   (public association: the balance never depends on the head-end, S3).
5. A summary: the facts, the pushed alerts, and the audit of the day (energy x tariff).
"""
import datetime
import tempfile
import time

from firmware import event_codes as ec
from firmware import timeutil
from firmware.cosem import table as T
from firmware.cosem.base import obis_text
from protocol.apdu.notification import DATA_NOTIFICATION, DataNotification
from protocol.cosem_types import CosemDateTime
from protocol.errors import ProtocolError

METER_ID = "BJ00000042"
START = timeutil.from_fields(2026, 1, 5, 9, 0) - timeutil.IST_OFFSET_S  # Monday 09:00 IST
OPENING_RUPEES = 10
LOAD_W = 1000
RECHARGE_RUPEES = 200
STEP_S = 900
MAX_RUN_S = 3 * 86400



# ---- the meter, served in a background thread -----------------------------------------------
def start_meter(state_dir=None):
    """The demo meter served on a free loopback port, with a push listener; started."""
    from hil.emulator.meter import EmulatedMeter
    from hil.emulator.thread import ServiceThread
    em = EmulatedMeter(state_dir, speed=0, meter_id=METER_ID, load="constant:%d" % LOAD_W,
                       start_s=START, opening_paise=OPENING_RUPEES * 100)
    mt = ServiceThread(em, tcp="127.0.0.1:0", push_listener=True)
    mt.start()
    return mt


# ---- the head-end side ------------------------------------------------------------------------
def public_view(address):
    """(balance paise, last recharge paise) read by a public client (no security)."""
    from protocol.client import DlmsClient
    from protocol.transport import TcpTransport
    with DlmsClient(TcpTransport(*address, timeout=10), "wrapper", role="public",
                    timeout=10) as c:
        bal = int(c.balance().paise)
        last = c.register(obis_text(T.LAST_RECHARGE_AMOUNT))
        return bal, int(last.raw * 10 ** (last.scaler + 2))


def _unix(value):
    """Unix seconds of a datetime (timezone-aware, from the meter's date-time)."""
    return int(value.timestamp())


class HeadEnd:
    """The head-end's view of one meter: the bijli DLMS client over TCP as the utility client
    (HLS-GMAC, suite 0, INSECURE demo keys)."""

    def __init__(self, address):
        from protocol.client import DlmsClient
        from protocol.transport import TcpTransport
        host, port = address
        self.client = DlmsClient(TcpTransport(host, port, timeout=10), framing="wrapper",
                                 role="utility", timeout=10)

    def open(self):
        """Connect and associate."""
        self.client.open()
        return self

    def close(self):
        """Release and disconnect."""
        self.client.close()

    def meter_id(self):
        """Serial number text."""
        return self.client.serial_number()

    def clock(self):
        """Meter time (Unix s)."""
        return _unix(self.client.clock())

    def energy(self):
        """(Wh, raw, scaler) of active energy import, scaled by its scaler_unit."""
        e = self.client.energy()
        return e.wh, e.raw, e.scaler

    def balance_paise(self):
        """Current balance (IS 15959 0.0.94.96.24.255) in paise."""
        return int(self.client.balance().paise)

    def relay(self):
        """(output_state, control state name) of IC 70, e.g. (False, "ready for reconnection")."""
        r = self.client.relay()
        return r.output, r.control_state_name.replace("_", " ")

    def set_push(self, host, port):
        """Make this head-end the push destination (IC 40 attribute 3)."""
        from protocol import axdr
        dest = ("%s:%d" % (host, port)).encode()
        self.client.set(40, obis_text(T.PUSH_SETUP), 3,
                        axdr.Structure([axdr.Enum(0), dest, axdr.Enum(0)]))

    def enter_token(self, digits):
        """Deliver 20 digits via IC 115 enter; returns the token result's name (the meter's
        word for it, e.g. "accept" or "used")."""
        return self.client.enter_token(digits).name

    def events(self, log, t_from, t_to):
        """Rows (time, code, value, extra, number) of an event log in [t_from, t_to]."""
        start = datetime.datetime.fromtimestamp(t_from, datetime.UTC)
        end = datetime.datetime.fromtimestamp(t_to, datetime.UTC)
        return [(_unix(e.time), e.code, e.value, e.extra, e.number)
                for e in self.client.events([log], start, end)]

    def daily_profile(self):
        """Rows (day start, import Wh, export Wh, charge paise, balance paise)."""
        prof = self.client.profile(obis_text(T.DAILY_PROFILE))
        return [(_unix(r[0]),) + tuple(int(x) for x in r[1:5]) for r in prof.rows]


# ---- the story ----------------------------------------------------------------------------------
def _rs(paise):
    sign = "-" if paise < 0 else ""
    paise = abs(paise)
    return "%sRs %d.%02d" % (sign, paise // 100, paise % 100)


def _local(t):
    """Local time to the nearest minute."""
    return timeutil.format_local(t + 30)[:16]


def _weekday(t):
    return ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[timeutil.local_fields(t)[6] - 1]


def run_demo(say=None, state_dir=None):
    """Run the whole demo; `say(kind, text)` narrates. Returns the summary dict."""
    say = say or (lambda kind, text: None)
    t_real = time.monotonic()
    tmp = tempfile.TemporaryDirectory(prefix="bijli-demo-")
    mt = start_meter(state_dir)
    address = mt.address
    s = {"meter_address": "%s:%d" % tuple(address), "meter_id": METER_ID}
    he = None
    try:
        from headend.vending import Vendor
        vendor = Vendor(tmp.name + "/vending.sqlite3")
        he = HeadEnd(address).open()
        t0 = _first_reading(say, he, mt, s)
        _run_until_cut(say, he, mt, s, t0)
        timeline = [(s["zero_time"], "balance reached zero"),
                    (s["cut_time"], "supply cut by the meter's policy (%s)" % s["cut_reason"]),
                    _pay(say, he, vendor, s)]
        say("step", "The consumer's app reads the meter itself, no head-end and no keys "
            "(public association)")
        s["public_balance"], s["public_last_recharge"] = public_view(address)
        say("read", "balance %s, last recharge %s" % (_rs(s["public_balance"]),
                                                      _rs(s["public_last_recharge"])))
        mt.advance(1)
        s["energy_end_wh"] = he.energy()[0]
        s["daily"] = he.daily_profile()
        time.sleep(0.2)  # let the last pushes arrive
        s["pushes"] = _push_summary(mt.pushes)
        s["timeline"] = timeline
    finally:
        if he is not None:
            he.close()
        mt.stop()
        tmp.cleanup()
    s["real_seconds"] = time.monotonic() - t_real
    return s


def _first_reading(say, he, mt, s):
    """Step 1: associate, become the push destination, read id, clock, energy, balance, relay.
    Returns the meter's time."""
    say("step", "Head-end associates with meter %s at %s as the utility client "
        "(HLS-GMAC, AES-GCM suite 0, INSECURE demo keys)" % (METER_ID, s["meter_address"]))
    he.set_push(*mt.push_address)
    s["meter_id_read"] = he.meter_id()
    t0 = he.clock()
    wh, raw, scaler = he.energy()
    s["energy_start_wh"] = wh
    s["energy_raw_scaler"] = (raw, scaler)
    s["balance_start"] = he.balance_paise()
    _out, state = he.relay()
    say("read", "%s %s  energy %s Wh (register %d, scaler %d, unit Wh)  balance %s  "
        "relay %s" % (_weekday(t0), _local(t0), wh, raw, scaler, _rs(s["balance_start"]), state))
    return t0


def _run_until_cut(say, he, mt, s, t0):
    """Step 2: let simulated time run until the meter's policy cuts the supply; the facts
    (when the credit ran out, when and why the supply was cut) go into `s`."""
    say("step", "A day at high clock speed: %d W load, tariff Rs 7.00/kWh; the meter's own "
        "policy decides (1 day grace after zero, cut only 10:00-13:00, not on Sunday)" % LOAD_W)
    zero_t = cut_t = None
    t = t0
    while t - t0 < MAX_RUN_S:
        mt.advance(STEP_S)
        t = he.clock()
        bal = he.balance_paise()
        out, _state = he.relay()
        if zero_t is None and bal <= 0:
            # the meter's own BALANCE_ZERO time, not this poll's (they are a step apart)
            zero_t = _first_event_time(he, ec.LOG_ACCOUNT, ec.BALANCE_ZERO, t0, t) or t
            say("event", "%s %s  credit ran out (balance %s at the %s reading): the grace "
                "period runs" % (_weekday(zero_t), _local(zero_t), _rs(bal), _local(t)[11:]))
        if not out:
            cut_t = t
            break
    if cut_t is None:
        raise RuntimeError("the policy never disconnected within %d s" % MAX_RUN_S)
    ctl = he.events(ec.LOG_CONTROL, t0, cut_t)
    cuts = [e for e in ctl if e[1] == ec.RELAY_DISCONNECTED]
    cut_event_t = cuts[-1][0] if cuts else cut_t
    reason = ec.REASON_NAMES.get(cuts[-1][2], "?") if cuts else "?"
    deferred = [e for e in ctl if e[1] == ec.DISCONNECT_DEFERRED]
    s["zero_time"] = zero_t
    s["cut_time"] = cut_event_t
    s["cut_reason"] = reason
    s["cut_local"] = _local(cut_event_t)
    s["deferred_reasons"] = sorted(set(ec.REASON_NAMES.get(e[2], "?") for e in deferred))
    s["balance_at_cut"] = he.balance_paise()
    say("event", "%s %s  relay DISCONNECTED by the meter (reason: %s) after %s of grace, "
        "inside the 10:00-13:00 window" % (_weekday(cut_event_t), _local(cut_event_t), reason,
                                           _dur(cut_event_t - (zero_t or cut_event_t))))


def _pay(say, he, vendor, s):
    """Step 3: vend a token, deliver it, see the meter reconnect itself; deliver it again
    (refused). The facts go into `s`; returns the timeline entry."""
    say("step", "Consumer pays Rs %d: head-end vends a 20-digit token and delivers it via the "
        "Token gateway (IC 115 enter)" % RECHARGE_RUPEES)
    rec = vendor.vend_record(METER_ID, "credit", RECHARGE_RUPEES)
    s["token"] = rec.digits
    before = he.balance_paise()
    t_pay = he.clock()
    s["token_time"] = t_pay
    r0 = time.monotonic()
    s["token_result"] = he.enter_token(rec.digits)
    out, state = he.relay()
    reconnect_ms = (time.monotonic() - r0) * 1000
    after = he.balance_paise()
    s["balance_before_token"] = before
    s["balance_after_token"] = after
    s["recharge_paise"] = rec.actual * 100
    s["ec_repaid"] = sum(e[2] for e in he.events(ec.LOG_ACCOUNT, t_pay, he.clock())
                         if e[1] == ec.EMERGENCY_CREDIT_REPAID)
    s["recharge_split"] = recharge_split(s["recharge_paise"], before, after, s["ec_repaid"])
    s["relay_after_token"] = state
    s["reconnected"] = bool(out)
    s["reconnect_ms"] = reconnect_ms
    say("event", "token %s %s: balance %s -> %s; relay %s by the meter itself, no "
        "reconnect command (token sent to relay read back: %.0f ms)" % (
            rec.digits, s["token_result"].upper(), _rs(before), _rs(after), state.upper(),
            reconnect_ms))
    say("event", explain_recharge(s["recharge_split"], s["zero_time"]))
    s["replay_result"] = he.enter_token(rec.digits)
    s["balance_after_replay"] = he.balance_paise()
    say("event", "the same token again: %s (balance stays %s)" % (
        s["replay_result"].upper(), _rs(s["balance_after_replay"])))
    return (t_pay, "token %s: %s, balance %s -> %s, relay %s" % (
        rec.digits, s["token_result"], _rs(before), _rs(after), state))


def _last_recharge_at(s, when):
    """Paise of the last recharge before `when` in the demo (the opening credit counts)."""
    t_pay = s.get("token_time")
    if t_pay is not None and when >= t_pay:
        return s["recharge_paise"]
    return s["balance_start"]


def _first_event_time(he, log, code, t_from, t_to):
    """Time of the first `code` event of `log` in [t_from, t_to], or None."""
    times = [e[0] for e in he.events(log, t_from, t_to) if e[1] == code]
    return times[0] if times else None


def recharge_split(paid, before, after, ec_repaid):
    """Where a recharge went: {paid, debt, emergency, added, before, after} in paise.

    The debt is what the balance was below zero (energy used after the credit ran out, during
    the grace period); emergency credit taken is repaid from the recharge too; the rest is added
    to the balance. ValueError if the figures do not add up (the account conserves money).
    """
    debt = -before if before < 0 else 0
    added = after - (before if before > 0 else 0)
    if debt + ec_repaid + added != paid:
        raise ValueError("recharge %d does not add up: debt %d + emergency %d + added %d" % (
            paid, debt, ec_repaid, added))
    return {"paid": paid, "debt": debt, "emergency": ec_repaid, "added": added,
            "before": before, "after": after}


def explain_recharge(split, zero_t=None):
    """One sentence: why the balance after a recharge is not the amount paid."""
    parts = []
    if split["debt"]:
        since = (" (from %s %s, through the grace period, to the cut)"
                 % (_weekday(zero_t), _local(zero_t)) if zero_t else "")
        parts.append("%s repaid the debt: energy used after the credit ran out%s"
                     % (_rs(split["debt"]), since))
    if split["emergency"]:
        parts.append("%s repaid the emergency credit" % _rs(split["emergency"]))
    parts.append("%s went to the balance" % _rs(split["added"]))
    return "%s paid: %s; balance now %s" % (_rs(split["paid"]), "; ".join(parts),
                                             _rs(split["after"]))


def alert_text(when, name, value, last_recharge):
    """A pushed alert as a line: local time, name and, for LOW_CREDIT, its threshold."""
    text = "%s  %s" % (_local(when), name)
    if name == "LOW_CREDIT":
        text += " %d%% threshold (balance at or below %s, %d%% of the last recharge %s)" % (
            value, _rs(last_recharge * value // 100), value, _rs(last_recharge))
    elif name == "BALANCE_ZERO":
        text += " (balance %s)" % _rs(value)
    return text


def _dur(seconds):
    minutes = (seconds + 30) // 60
    h, m = minutes // 60, minutes % 60
    return "%dh%02dm" % (h, m)


def _push_summary(apdus):
    """[(meter time, event name, value)] of the data-notifications received (bijli's push:
    a structure whose 4th element is the alert (code, value, ...))."""
    out = []
    for apdu in apdus:
        try:
            if apdu[:1] != bytes((DATA_NOTIFICATION,)):
                continue
            push = DataNotification.decode(apdu)
            if not isinstance(push.date_time, CosemDateTime):
                continue  # not one of bijli's pushes (they carry the meter's date-time)
            alert = push.body[3]
            when = int(push.date_time.to_datetime().timestamp())
            out.append((when, ec.name(int(alert[0])), int(alert[1])))
        except (ProtocolError, ValueError, IndexError, TypeError, AttributeError):
            out.append((0, "undecodable push", 0))
    return out


def summary_rows(s):
    """The summary of `run_demo` as (fact, value) text rows, in the order a reader follows."""
    rows = [
        ("meter", "%s at %s (DLMS wrapper over TCP)" % (s["meter_id_read"], s["meter_address"])),
        ("energy import", "%s Wh at start, %s Wh at end (scaler %d, unit Wh)" % (
            s["energy_start_wh"], s["energy_end_wh"], s["energy_raw_scaler"][1])),
        ("balance", "%s at start" % _rs(s["balance_start"])),
        ("credit ran out", _local(s["zero_time"]) + " local"),
        ("disconnection", "%s local by the meter's policy (%s): 1 day grace, inside "
         "10:00-13:00" % (s["cut_local"], s["cut_reason"])),
        ("recharge token", "%s -> %s" % (s["token"], s["token_result"])),
        ("balance after token", "%s -> %s" % (_rs(s["balance_before_token"]),
                                              _rs(s["balance_after_token"]))),
        ("where the recharge went", explain_recharge(s["recharge_split"], s["zero_time"])),
        ("relay after token", "%s (reconnected by the meter itself, %.0f ms after "
         "the token was sent)" % (s["relay_after_token"], s["reconnect_ms"])),
        ("same token again", s["replay_result"]),
        ("public read (no keys)", "balance %s, last recharge %s" % (
            _rs(s["public_balance"]), _rs(s["public_last_recharge"]))),
        ("alerts pushed", "\n".join(
            alert_text(when, name, value, _last_recharge_at(s, when))
            for when, name, value in s["pushes"]) or "none"),
    ]
    for row in s["daily"]:
        rows.append(("daily profile %s" % _local(row[0])[:10],
                     "%d Wh imported, %s charged (%d Wh x Rs 7.00/kWh), closing balance %s" % (
                         row[1], _rs(row[3]), row[1], _rs(row[4]))))
    rows.append(("run time", "%.1f s real" % s["real_seconds"]))
    return rows
