"""`bijli token ...`: vend and inspect 20-digit recharge tokens (host side).

    bijli token vend --meter-id BJL0000123 --amount 500
    bijli token vend --meter-id BJL0000123 --type load-limit --watts 3000
    bijli token inspect 1234 5678 9012 3456 7890 --meter-id BJL0000123
    bijli token service-codes

Without --key-file the well-known demo vending key is used and a WARNING line says it is
INSECURE. Key bytes are never printed.
"""
import json
import os

import click

from firmware import token_codec as tc
from headend import vending

TYPE_CHOICES = sorted(vending.TYPES_BY_NAME)


def _vendor(state, key_file):
    key = vending.load_key_file(key_file) if key_file else None
    if key is None:
        click.echo(vending.DEMO_KEY_WARNING, err=True)
    return vending.Vendor(state, vending_key=key)


def _state_option(fn):
    return click.option(
        "--state", type=click.Path(dir_okay=False), default=vending.DEFAULT_STATE,
        envvar="BIJLI_VENDING_STATE", show_default=True,
        help="Vending state file (SQLite): id counters and the vend log.")(fn)


def _key_option(fn):
    return click.option(
        "--key-file", type=click.Path(exists=True, dir_okay=False),
        help="Vending key as hex (16..64 bytes). Default: the INSECURE demo key.")(fn)


def _quantity_text(ttype, q):
    if ttype in (tc.TYPE_CREDIT, tc.TYPE_SET_EMERGENCY_LIMIT):
        return "%d rupees" % q
    if ttype == tc.TYPE_SET_LOAD_LIMIT:
        return "%d W" % q if q else "no limit"
    if ttype == tc.TYPE_ADVANCE_KEY_REVISION:
        return "to revision %d" % q
    return ""


@click.group("token")
def token():
    """Vend and inspect 20-digit recharge tokens."""


@token.command("vend")
@click.option("--meter-id", required=True, help="Meter serial number, exactly as the meter reports it.")
@click.option("--type", "type_name", type=click.Choice(TYPE_CHOICES), default="credit",
              show_default=True, help="Token type.")
@click.option("--amount", type=int, help="Whole rupees (credit, emergency-limit).")
@click.option("--watts", type=int, help="Load limit in W, 0 = no limit (load-limit).")
@click.option("--revision", type=int, help="New key revision (key-revision; default: next).")
@_key_option
@_state_option
@click.option("--json", "as_json", is_flag=True, help="Print the vend record as JSON.")
def vend_cmd(meter_id, type_name, amount, watts, revision, key_file, state, as_json):
    """Vend one token for a meter and print its 20 digits."""
    ttype = vending.TYPES_BY_NAME[type_name]
    given = {"--amount": amount, "--watts": watts, "--revision": revision}
    wanted = {tc.TYPE_CREDIT: "--amount", tc.TYPE_SET_EMERGENCY_LIMIT: "--amount",
              tc.TYPE_SET_LOAD_LIMIT: "--watts", tc.TYPE_ADVANCE_KEY_REVISION: "--revision"}.get(ttype)
    for opt, val in given.items():
        if val is not None and opt != wanted:
            raise click.UsageError("%s does not apply to a %s token" % (opt, type_name))
    value = given.get(wanted) if wanted else None
    if wanted in ("--amount", "--watts") and value is None:
        raise click.UsageError("a %s token needs %s" % (type_name, wanted))
    try:
        v = _vendor(state, key_file)
        with v:
            rec = v.vend_record(meter_id, ttype, value)
    except vending.VendingError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps({
            "digits": rec.digits, "meter_id": rec.meter_id, "type": rec.type_name,
            "quantity": rec.quantity, "actual": rec.actual, "token_id": rec.token_id,
            "epoch": rec.epoch, "key_rev": rec.key_rev, "insecure_demo_key": v.insecure}))
        return
    click.echo(rec.digits)
    detail = _quantity_text(rec.ttype, rec.actual)
    click.echo("meter %s | %s%s | id %d | epoch %d | key revision %d" % (
        rec.meter_id, rec.type_name, (" " + detail) if detail else "", rec.token_id, rec.epoch,
        rec.key_rev))
    if rec.actual != rec.quantity and rec.ttype != tc.TYPE_ADVANCE_KEY_REVISION:
        click.echo("note: %s rounded up to %s (token value encoding step)" % (
            _quantity_text(rec.ttype, rec.quantity), _quantity_text(rec.ttype, rec.actual)))
    if rec.ttype == tc.TYPE_ADVANCE_KEY_REVISION:
        click.echo("note: deliver this token before any later one: later tokens use revision %d"
                   % rec.quantity)
        click.echo("note: the meter must already hold the key of revision %d, or it refuses this "
                   "token (type) and every later one (auth)" % rec.quantity)


@token.command("inspect")
@click.argument("digits", nargs=-1, required=True)
@click.option("--meter-id", required=True, help="Meter serial number the token is for.")
@_key_option
@_state_option
@click.option("--json", "as_json", is_flag=True, help="Print the decode as JSON.")
def inspect_cmd(digits, meter_id, key_file, state, as_json):
    """Decode a token for support: type, value, id, epoch, key revision, or why it fails.

    DIGITS may be given with or without spaces or dashes. Exit status 1 if it does not decode.
    """
    text = " ".join(digits)
    if not os.path.exists(state):  # read-only: never create a vending state here
        click.echo("note: no vending state at %s: the epoch and key revision are assumed 0 and "
                   "the vend log is not checked" % state, err=True)
        state = ":memory:"
    try:
        v = _vendor(state, key_file)
        with v:
            info = v.inspect(meter_id, text)
    except vending.VendingError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
    elif "token_id" in info:
        click.echo("token    %s" % tc.format_digits(tc.normalize(text)))
        click.echo("meter    %s" % meter_id)
        detail = _quantity_text(info["ttype"], info["quantity"]) if info["quantity"] is not None else ""
        click.echo("type     %s%s" % (info["type_name"], (" (" + detail + ")") if detail else ""))
        click.echo("value    %d (16-bit field)" % info["value"])
        click.echo("id       %d" % info["token_id"])
        click.echo("epoch    %d" % info["epoch"])
        click.echo("key rev  %d" % info["key_rev"])
        issued = info["issued"]
        click.echo("issued   %s" % ("yes, by this vending state" if issued else
                                    "not in this vending state's log"))
        if not info["ok"]:
            click.echo("status   %s" % info["reason"])
    else:
        click.echo("status   %s" % info["reason"])
    if not info["ok"]:
        raise SystemExit(1)


@token.command("service-codes")
def service_codes_cmd():
    """List the unencrypted 4-digit service codes (display and test only)."""
    for fn in sorted(tc.SERVICE_NAMES):
        click.echo("%s  %s" % (tc.service_code(fn), tc.SERVICE_NAMES[fn]))
