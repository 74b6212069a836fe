"""The push listener: receives the meters' DLMS data-notifications over the TCP wrapper,
stores them and acts on them.

    listener = PushListener(db_url, notifier)
    await listener.start("0.0.0.0", 4060)     # the meters' push destination (IC 40 attr 3)
    ...
    await listener.close()

A bijli meter pushes on every alert (firmware/cosem/table.py ALERT_CODES) a data-notification
whose body is its push_object_list: {push setup name, serial number (the meter id), clock,
latest alert {code, value, extra, event number, time}, balance (paise), relay output}. Each
push is stored in `pushes` once (a push sent again -- the same meter and event number -- is
recognised and not acted on twice) and acted on:

- tamper (cover open, magnet) -> an alert (severity critical); a load-limit trip -> an alert
  (warning); a push from a meter not in the registry -> an alert (warning), stored, no state;
- low credit (the meter's LOW_CREDIT event names the threshold crossed) and balance zero ->
  the low-credit notice of that level (headend.notices, one a threshold a recharge);
- relay changes, power up / down, balance -> the meter's state (headend.meter_state: last
  seen, relay, powered, balance, when the balance reached zero).

Ciphered pushes: bijli meters send their data-notifications unciphered (firmware/cosem/push.py;
the push carries no key material and no command). A ciphered APDU (general-glo-ciphering,
general-ciphering) is logged and counted, not stored as if it were understood.

Robustness: an APDU that does not decode, or a body of another shape, is logged and counted
(`counts["malformed"]`), nothing is stored for it, and the connection goes on (the wrapper
framing is intact, the next push on it is read). A broken wrapper header cannot be resynchronised
on a byte stream: that connection is closed (logged), the listener goes on. The database runs on
one executor thread (the event loop never blocks on it); an error there is logged and the
push counted as `failed` (the meter's next push brings the state again).
"""
import asyncio
import concurrent.futures

from firmware import event_codes as ec
from headend import alerts, audit, meter_state, notices
from headend import db as dbmod
from headend.clock import now as headend_now
from protocol.apdu import DataNotification, decode_apdu
from protocol.errors import FramingError, ProtocolError
from protocol.wrapper import WrapperDecoder

CIPHERED_TAGS = {0xDB: "general-glo-ciphering", 0xDD: "general-ciphering",
                 0xDF: "general-signing"}
TAMPER = {ec.TAMPER_COVER_OPEN: "cover opened", ec.TAMPER_MAGNET: "magnet detected"}
RELAY = {ec.RELAY_CONNECTED: True, ec.RELAY_DISCONNECTED: False,
         ec.RELAY_READY_FOR_RECONNECTION: False}
POWER = {ec.POWER_UP: True, ec.POWER_DOWN: False}
ACTOR = "push-listener"


class PushError(ValueError):
    """A push whose body is not the shape a bijli meter sends (the message says how)."""


class Push:
    """A decoded push: meter_id, meter_time, event (code, value, extra, number, time or None),
    balance_paise, relay (True = connected), apdu (hex)."""

    __slots__ = ("meter_id", "meter_time", "event", "balance_paise", "relay", "apdu")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


def _unix(v):
    from protocol.cosem_types import CosemDateTime
    try:
        return CosemDateTime(bytes(v)).to_unix()
    except (ProtocolError, ValueError, TypeError):
        return None


def parse(apdu):
    """A Push from data-notification APDU bytes; PushError / ProtocolError when not one."""
    tag = apdu[0] if apdu else None
    if tag in CIPHERED_TAGS:
        raise PushError("a ciphered push (%s): bijli meters push unciphered; not decoded"
                        % CIPHERED_TAGS[tag])
    pdu = decode_apdu(apdu)
    if not isinstance(pdu, DataNotification):
        raise PushError("%s is not a data-notification" % type(pdu).__name__)
    body = pdu.body
    if not isinstance(body, list) or len(body) != 6:
        raise PushError("the push body is not the 6-value push_object_list of a bijli meter")
    _name, serial, clock, alert, balance, relay = body
    if not isinstance(serial, (bytes, bytearray)) or not serial:
        raise PushError("no serial number (meter id) in the push")
    try:
        meter_id = bytes(serial).decode("ascii")
    except UnicodeDecodeError:
        raise PushError("the serial number is not ASCII") from None
    if not meter_id.isprintable() or len(meter_id) > 32:
        raise PushError("the serial number is not a meter id")
    event = None
    if alert is not None:
        if not isinstance(alert, list) or len(alert) != 5:
            raise PushError("the alert value is not {code, value, extra, number, time}")
        code, value, extra, number, when = alert
        if not all(isinstance(x, int) for x in (code, value, extra, number)):
            raise PushError("the alert's code, value, extra and number are not integers")
        if code:
            event = (int(code), int(value), int(extra), int(number), _unix(when))
    if balance is not None and (not isinstance(balance, int) or isinstance(balance, bool)):
        raise PushError("the balance is not an integer")
    if relay is not None and not isinstance(relay, bool):
        raise PushError("the relay output is not a boolean")
    return Push(meter_id=meter_id, meter_time=_unix(clock), event=event,
                balance_paise=None if balance is None else int(balance), relay=relay,
                apdu=bytes(apdu).hex())


def store_and_act(db, push, peer, now, notifier):
    """Store one push and act on it (see the module docstring); returns what was done:
    'stored', 'repeat' (already stored) or 'unknown meter'."""
    known = db.scalar("SELECT count(*) FROM meters WHERE meter_id=?", (push.meter_id,))
    ev = push.event
    with db.transaction():
        pid = db.scalar(
            "INSERT INTO pushes (received_at, peer, meter_id, meter_time, event_code, "
            "event_name, event_value, event_number, balance_paise, relay_connected, apdu) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, event_number) "
            "DO NOTHING RETURNING id",
            (now, peer, push.meter_id, push.meter_time, ev and ev[0],
             ev and ec.NAMES.get(ev[0], "event %d" % ev[0]), ev and ev[1], ev and ev[3],
             push.balance_paise, None if push.relay is None else int(push.relay), push.apdu))
        if pid is None:
            return "repeat"
        if not known:
            _alert(db, now, None, "unknown_meter", "warning", "push from %s, not in the "
                   "registry (from %s)" % (push.meter_id, peer), pid)
            return "unknown meter"
        code = ev[0] if ev else None
        zero_at = ev[4] if code == ec.BALANCE_ZERO and ev[4] is not None else None
        meter_state.observe(db, push.meter_id, now, "push", balance_paise=push.balance_paise,
                            relay=RELAY.get(code, push.relay), powered=POWER.get(code),
                            zero_at=zero_at)
        if code in TAMPER:
            _alert(db, now, push.meter_id, "tamper", "critical", "tamper: %s (meter time %s)"
                   % (TAMPER[code], _iso(ev[4])), pid)
        elif code == ec.LOAD_LIMIT_TRIP:
            _alert(db, now, push.meter_id, "load_limit", "warning",
                   "load limit tripped at %d W" % ev[1], pid)
    if code == ec.LOW_CREDIT:
        notices.check_low_credit(db, notifier, push.meter_id, push.balance_paise, now, ACTOR,
                                 level=ev[1])
    elif code == ec.BALANCE_ZERO:
        notices.check_low_credit(db, notifier, push.meter_id, push.balance_paise, now, ACTOR,
                                 level=0)
    return "stored"


def _iso(t):
    import datetime
    if t is None:
        return "unknown"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def _alert(db, now, meter_id, kind, severity, message, push_id):
    db.execute("INSERT INTO alerts (at, meter_id, kind, severity, message, push_id) VALUES "
               "(?, ?, ?, ?, ?, ?)", (now, meter_id, kind, severity, message, push_id))
    audit.record(db, ACTOR, "alert", now, meter_id=meter_id, outcome=kind, reason=message,
                 detail={"severity": severity, "push_id": push_id})


def list_alerts(db, meter_id=None, kind=None, since=None, limit=1000):
    """Alerts, newest first: id, at, meter_id, kind, severity, message, push_id and who
    acknowledged them when (headend.alerts.query)."""
    return alerts.query(db, since=since, meter_id=meter_id, kind=kind, limit=limit)[0]


class PushListener:
    """See the module docstring. `counts`: connections, pushes, stored, repeat, unknown meter,
    malformed, ciphered, framing, failed."""

    def __init__(self, db_url, notifier, clock=headend_now, echo=None):
        self.db_url = db_url
        self.notifier = notifier
        self.clock = clock
        self.echo = echo or (lambda text: None)
        self.counts = dict.fromkeys(("connections", "pushes", "stored", "repeat",
                                     "unknown meter", "malformed", "ciphered", "framing",
                                     "failed"), 0)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="push-db")
        self._conn = None
        self._server = None
        self.address = None

    async def start(self, host, port):
        """Listen on host:port (port 0: a free one); `address` is where it listens."""
        self._server = await asyncio.start_server(self._client, host, port)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self.address

    async def close(self):
        """Stop listening and close the database connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_db)
        self._executor.shutdown(wait=True)

    def _close_db(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _store(self, push, peer):
        if self._conn is None:
            self._conn = dbmod.connect(self.db_url)
        try:
            return store_and_act(self._conn, push, peer, self.clock(), self.notifier)
        except dbmod.DatabaseError:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            raise

    async def handle(self, apdu, peer):
        """Parse, store and act on one APDU; returns the outcome name (a `counts` key)."""
        self.counts["pushes"] += 1
        try:
            push = parse(apdu)
        except PushError as e:
            kind = "ciphered" if apdu and apdu[0] in CIPHERED_TAGS else "malformed"
            self.echo("push from %s %s: %s" % (peer, kind, e))
            self.counts[kind] += 1
            return kind
        except ProtocolError as e:
            self.echo("push from %s malformed: %s" % (peer, e))
            self.counts["malformed"] += 1
            return "malformed"
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(self._executor, self._store, push, peer)
        except dbmod.DatabaseError as e:
            self.echo("push from %s (%s) not stored: %s" % (peer, push.meter_id, e))
            self.counts["failed"] += 1
            return "failed"
        self.counts[done] += 1
        self.echo("push %s %s: %s" % (push.meter_id, ec.NAMES.get(push.event[0], push.event[0])
                                      if push.event else "-", done))
        return done

    async def _client(self, reader, writer):
        peer = "%s:%s" % writer.get_extra_info("peername")[:2]
        self.counts["connections"] += 1
        stream = WrapperDecoder()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                try:
                    pdus = stream.feed(data)
                except FramingError as e:
                    self.counts["framing"] += 1
                    self.echo("push connection from %s closed: %s" % (peer, e))
                    break
                for pdu in pdus:
                    try:
                        await self.handle(pdu.apdu, peer)
                    except Exception as e:  # noqa: BLE001 - one push never stops the listener
                        self.counts["failed"] += 1
                        self.echo("push from %s: unexpected %s: %s" % (peer, type(e).__name__,
                                                                      e))
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
