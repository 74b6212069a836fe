"""Head-end controls: named settings in the `controls` table, each with who set it, when and
why (the kill switch, the bulk session rate, the disconnection calendar, the notice policy).
Shared by headend.jobs and headend.notices."""
from headend.disconnect_calendar import DisconnectCalendar

CALENDAR = "disconnect_calendar"


def get_control(db, name):
    """{value, set_by, set_at, reason} of a control, or None when never set."""
    rows = db.dicts("SELECT value, set_by, set_at, reason FROM controls WHERE name=?", (name,))
    return rows[0] if rows else None


def set_control(db, name, value, actor, now, reason):
    """Store a control's value (inside the caller's transaction; the caller audits it)."""
    db.execute("INSERT INTO controls (name, value, set_by, set_at, reason) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value=excluded.value, set_by=excluded.set_by, "
               "set_at=excluded.set_at, reason=excluded.reason",
               (name, value, actor, now, reason or ""))


def calendar(db):
    """The utility's disconnection calendar (DisconnectCalendar; the default when none set)."""
    row = get_control(db, CALENDAR)
    return DisconnectCalendar.from_json(row["value"]) if row else DisconnectCalendar()
