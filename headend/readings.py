"""The meters' own profiles as the head-end stored them (table `meter_readings`).

A `read` bulk step reads the meter's daily profile and its interval (load) profile (each
entry: period start, import Wh, export Wh, charge in paise during the period, balance in
paise at its close) and `store` keeps them, one row per meter, profile and period start:
reading the same period again overwrites it (the meter's figures are the truth), nothing is
counted twice. The dashboard's consumption plots and the charge per day come from here.
"""
DAILY, INTERVAL = "daily", "interval"
PROFILES = (DAILY, INTERVAL)
COLUMNS = ("start_at", "import_wh", "export_wh", "charge_paise", "balance_paise")


def store(db, meter_id, profiles, read_at):
    """Upsert {"daily": [[start_unix, import_wh, export_wh, charge_paise, balance_paise],
    ...], "interval": [...]} for one meter (inside the caller's transaction when there is
    one); returns how many rows were written. Rows that are not five numbers are ignored."""
    rows = []
    for profile in PROFILES:
        for entry in profiles.get(profile) or ():
            if (not isinstance(entry, (list, tuple)) or len(entry) < 5
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in entry[:5])):
                continue
            rows.append((meter_id, profile, float(entry[0])) + tuple(int(v) for v in entry[1:5])
                        + (0, read_at))
    with db.transaction():
        for i in range(0, len(rows), 100):
            chunk = rows[i:i + 100]
            db.execute("INSERT INTO meter_readings (meter_id, profile, start_at, import_wh, "
                       "export_wh, charge_paise, balance_paise, status, read_at) VALUES "
                       + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
                       + " ON CONFLICT (meter_id, profile, start_at) DO UPDATE SET "
                       "import_wh=excluded.import_wh, export_wh=excluded.export_wh, "
                       "charge_paise=excluded.charge_paise, balance_paise=excluded.balance_paise, "
                       "read_at=excluded.read_at", [v for r in chunk for v in r])
    return len(rows)


def series(db, meter_id, profile, since=None, limit=400):
    """The stored entries of one profile, oldest first, from `since` (Unix seconds) on: dicts
    with start_at, import_wh, export_wh, charge_paise, balance_paise, read_at."""
    params = [meter_id, profile]
    where = ""
    if since is not None:
        where = " AND start_at >= ?"
        params.append(since)
    rows = db.dicts("SELECT start_at, import_wh, export_wh, charge_paise, balance_paise, read_at "
                    "FROM meter_readings WHERE meter_id=? AND profile=?" + where +
                    " ORDER BY start_at DESC LIMIT ?", params + [limit])
    rows.reverse()
    return rows
