"""The settings a bulk job writes into the meters' own policy, checked before the job exists.

    set_tariff    {"rates": [700, 900]}     paise per kWh, one per tariff zone of the meter, in
                                            zone order (IC 113 0.0.19.20.0.255 unit_charge;
                                            the zones' start times stay the meter's)
    set_holidays  {"holidays": ["2026-08-15", "2026-10-02"]}   the meter's holiday list
                                            (0.0.96.3.130.255; replaces it; [] clears it)
    set_window    {"window": ["10:00", "13:00"], "grace_s": 86400}   the meter's disconnect
                                            window in local time and, optionally, the grace
                                            after reaching zero (0.0.96.3.131.255)

Every other kind takes no parameters. `check` returns the canonical JSON kept with the job
(or None) and raises ParamsError naming the field at fault.
"""
import json

from headend.disconnect_calendar import CalendarError, parse_date, parse_hhmm

MAX_RATE = 32767 * 10 ** 4  # the meter's unit_charge: int16 mantissa, price scale 0..4


class ParamsError(ValueError):
    """A job's settings are unusable (the message names the field); jobs.create raises it
    as a JobError."""


def _error(text):
    return ParamsError(text)


def rate_scale(rates):
    """(price scale, mantissas) writing `rates` exactly, as the meter's IC 113 encodes them;
    ParamsError when a rate cannot be written exactly (its last digits would be lost)."""
    scale = 0
    while max(rates) // 10 ** scale > 32767:
        scale += 1
    if scale > 4:
        raise _error("rates: at most %d paise/kWh" % MAX_RATE)
    for r in rates:
        if r % 10 ** scale:
            raise _error("rates: %d paise/kWh cannot be written exactly beside %d (the meter "
                         "keeps 5 significant digits per rate table)" % (r, max(rates)))
    return scale, [r // 10 ** scale for r in rates]


def check(kind, params):
    """Canonical JSON text of a job's params, None for kinds without; ParamsError when bad."""
    if kind not in ("set_tariff", "set_holidays", "set_window"):
        if params:
            raise _error("a %s job takes no parameters" % kind)
        return None
    if not isinstance(params, dict):
        raise _error("a %s job needs its settings (see `bijli headend jobs create --help`)"
                     % kind)
    if kind == "set_tariff":
        rates = params.get("rates")
        if (set(params) != {"rates"} or not isinstance(rates, list) or not rates
                or not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r
                           for r in rates)):
            raise _error("set_tariff needs rates: whole paise per kWh, one per zone")
        rate_scale(rates)
        out = {"rates": rates}
    elif kind == "set_holidays":
        days = params.get("holidays")
        if set(params) != {"holidays"} or not isinstance(days, list):
            raise _error("set_holidays needs holidays: a list of YYYY-MM-DD dates")
        try:
            dates = sorted({parse_date(d) for d in days})
        except CalendarError as e:
            raise _error(str(e)) from None
        if any(not 2000 <= d.year <= 2099 for d in dates):
            raise _error("holidays: the meters keep years 2000..2099")
        out = {"holidays": [d.isoformat() for d in dates]}
    else:
        if not set(params) <= {"window", "grace_s"} or "window" not in params:
            raise _error("set_window needs window: [HH:MM, HH:MM] (and optionally grace_s)")
        w = params["window"]
        try:
            if not isinstance(w, (list, tuple)) or len(w) != 2:
                raise CalendarError("window is [start, end]")
            start, end = parse_hhmm(w[0], "window start"), parse_hhmm(w[1], "window end")
        except CalendarError as e:
            raise _error(str(e)) from None
        if start == end:
            raise _error("window start and end are the same time")
        out = {"window": ["%02d:%02d" % (s // 3600, s % 3600 // 60) for s in (start, end)]}
        if "grace_s" in params:
            g = params["grace_s"]
            if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g <= 0xFFFFFFFF:
                raise _error("grace_s is whole seconds, 0..4294967295")
            out["grace_s"] = g
    return json.dumps(out, sort_keys=True)


def seconds_of_day(hhmm):
    """Seconds after midnight of a checked 'HH:MM'."""
    return parse_hhmm(hhmm)
