"""How the dashboard writes times, ages and money (Jinja2 filters)."""
import datetime

IST = datetime.timezone(datetime.timedelta(hours=5, minutes=30))


def when(t, tz=IST, seconds=False):
    """Unix seconds as local 'YYYY-MM-DD HH:MM' ('-' for None)."""
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, tz).strftime(
        "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def age(seconds):
    """A duration for people: '42 s', '7 min', '3 h 5 min', '2 d 4 h'."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return "%d s" % s
    if s < 3600:
        return "%d min" % (s // 60)
    if s < 86400:
        return "%d h %d min" % (s // 3600, s % 3600 // 60)
    return "%d d %d h" % (s // 86400, s % 86400 // 3600)


def rupees(paise):
    """Paise as 'Rs 1,234.56' (negative balances keep their sign)."""
    if paise is None:
        return "-"
    sign = "-" if paise < 0 else ""
    p = abs(int(paise))
    return "%sRs %s.%02d" % (sign, "{:,}".format(p // 100), p % 100)


def digits(text):
    """A 20-digit token in groups of four, as printed on receipts."""
    t = "".join(ch for ch in str(text or "") if ch.isdigit())
    return " ".join(t[i:i + 4] for i in range(0, len(t), 4))


def number(n):
    """An integer with thousands separators."""
    return "-" if n is None else "{:,}".format(n)


FILTERS = {"when": when, "age": age, "rupees": rupees, "digits": digits, "number": number}
GLOBALS = {}
