"""Notifiers: how a notice reaches a consumer (or the utility's own systems).

    n = from_spec("console")                      # one line per notice on stderr (the default)
    n = from_spec("file:/var/log/bijli/notices.jsonl")   # one JSON object a line
    n = from_spec("webhook:http://127.0.0.1:8080/notices")  # HTTP POST of the JSON, retried
    n = from_spec("sms-file:/tmp/sms-outbox.txt") # the file-backed SMS gateway (tests, demos)
    n = from_spec("sms:mypackage.gateways:AcmeSms")  # your SmsGateway subclass
    n.send(notice)   # notice: {meter_id, kind, level, recipient, message, at}; returns a
                     # short receipt text, or raises NotifyError (NoRecipient: no contact)

Every notifier has a `channel` name (kept with each notice). A webhook POSTs the notice as
JSON with `Content-Type: application/json`; a 2xx answer is delivered, a 4xx is refused at
once (the receiver said the request is wrong: sending it again will not help), a 5xx or a
connection error is retried `retries` times with exponential backoff (base, doubling). An SMS
goes through an `SmsGateway` (implement `send_sms(to, text)` for your operator's API) to the
meter's registry contact; a meter without a contact gets no SMS (NoRecipient).
"""
import importlib
import json
import sys
import time
import urllib.error
import urllib.request


class NotifyError(Exception):
    """A notice could not be delivered through this channel (the message says why)."""


class NoRecipient(NotifyError):
    """The channel needs a recipient (a phone number) the meter's registry row lacks."""


class Notifier:
    """Base: `channel` names the channel; `send(notice)` delivers or raises NotifyError."""

    channel = "none"

    def send(self, notice):
        raise NotImplementedError

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, self.channel)


class ConsoleNotifier(Notifier):
    """One line per notice on a text stream (stderr by default)."""

    channel = "console"

    def __init__(self, stream=None):
        self.stream = stream

    def send(self, notice):
        stream = self.stream or sys.stderr
        stream.write("NOTICE %s %s%s to %s: %s\n" % (
            notice["meter_id"], notice["kind"], " " + notice["level"] if notice["level"] else "",
            notice["recipient"] or "(no contact)", notice["message"]))
        stream.flush()
        return "printed"


class FileNotifier(Notifier):
    """Append each notice as one JSON object a line to a file (another system picks it up)."""

    def __init__(self, path):
        self.path = path
        self.channel = "file:%s" % path

    def send(self, notice):
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(notice, sort_keys=True) + "\n")
        except OSError as e:
            raise NotifyError("cannot write %s: %s" % (self.path, e.strerror)) from None
        return "written"


class WebhookNotifier(Notifier):
    """HTTP POST of the notice as JSON, retried on 5xx / connection errors (see module doc)."""

    def __init__(self, url, retries=3, backoff_s=0.5, timeout_s=5.0, sleep=time.sleep):
        if not url.startswith(("http://", "https://")):
            raise NotifyError("a webhook is an http:// or https:// URL, got %r" % url)
        self.url = url
        self.channel = "webhook:%s" % url
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.attempts = 0  # of the last send

    def send(self, notice):
        body = json.dumps(notice, sort_keys=True).encode()
        last = None
        self.attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.attempts += 1
            req = urllib.request.Request(self.url, data=body, method="POST", headers={
                "Content-Type": "application/json", "User-Agent": "bijli-headend"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return "HTTP %d after %d attempt(s)" % (resp.status, self.attempts)
            except urllib.error.HTTPError as e:
                last = "HTTP %d %s" % (e.code, e.reason)
                if 400 <= e.code < 500:
                    raise NotifyError("webhook refused the notice: %s" % last) from None
            except (urllib.error.URLError, OSError) as e:
                last = str(getattr(e, "reason", e))
        raise NotifyError("webhook unreachable after %d attempts: %s" % (self.attempts, last))


class SmsGateway:
    """The interface an SMS operator's adapter implements.

    Subclass it and implement `send_sms(to, text)`: send one SMS of `text` to the number `to`
    (the meter's registry contact, as stored) and return the operator's message id (text);
    raise NotifyError when the operator refuses or cannot be reached (the notice is recorded
    as failed with that message, and sent again by the next run). Name the class on the
    command line as `sms:MODULE:CLASS` (it is built with no arguments; read credentials from
    the environment, never from the head-end database)."""

    def send_sms(self, to, text):
        raise NotImplementedError


class FileSmsGateway(SmsGateway):
    """An SMS gateway that appends 'TO<TAB>TEXT' lines to a file (tests and demos)."""

    def __init__(self, path):
        self.path = path
        self.sent = 0

    def send_sms(self, to, text):
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("%s\t%s\n" % (to, text.replace("\n", " ")))
        except OSError as e:
            raise NotifyError("cannot write %s: %s" % (self.path, e.strerror)) from None
        self.sent += 1
        return "file-sms-%d" % self.sent


class SmsNotifier(Notifier):
    """A notice as an SMS through an SmsGateway to the meter's contact."""

    def __init__(self, gateway, name=None):
        self.gateway = gateway
        self.channel = "sms:%s" % (name or type(gateway).__name__)

    def send(self, notice):
        if not notice.get("recipient"):
            raise NoRecipient("meter %s has no contact number in the registry"
                              % notice["meter_id"])
        return "sms id %s" % self.gateway.send_sms(notice["recipient"], notice["message"])


def from_spec(spec):
    """A Notifier from a spec (see the module docstring); NotifyError when unusable."""
    spec = (spec or "console").strip()
    kind, _sep, arg = spec.partition(":")
    if kind == "console" and not arg:
        return ConsoleNotifier()
    if kind == "file" and arg:
        return FileNotifier(arg)
    if kind == "webhook" and arg:
        return WebhookNotifier(arg)
    if kind == "sms-file" and arg:
        return SmsNotifier(FileSmsGateway(arg), "file")
    if kind == "sms" and arg:
        module, _sep, cls = arg.partition(":")
        try:
            gateway_cls = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError, ValueError) as e:
            raise NotifyError("cannot load SMS gateway %r: %s" % (arg, e)) from None
        if not (isinstance(gateway_cls, type) and issubclass(gateway_cls, SmsGateway)):
            raise NotifyError("%s is not an SmsGateway subclass" % arg)
        return SmsNotifier(gateway_cls(), cls)
    raise NotifyError("unknown notifier %r: console, file:PATH, webhook:URL, sms-file:PATH "
                      "or sms:MODULE:CLASS" % spec)
