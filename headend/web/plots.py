"""Consumption plots as inline SVG, drawn here (no chart library): daily bars and the interval
profile. Each bar carries a <title> (its value on hover / for screen readers) and the chart a
title and description; the numbers are also in a table beside it on the page."""
import html

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 10, 14, 34


def _nice_max(v):
    """A round axis maximum at or above v (1, 2, 2.5, 5 x 10^n)."""
    if v <= 0:
        return 1
    mag = 1
    while mag * 10 <= v:
        mag *= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * mag >= v:
            return step * mag
    return 10 * mag


def _fmt(v):
    return ("%.1f" % v).rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def bar_chart(values, labels, title, unit, tick_every=1, css_id="plot"):
    """An SVG bar chart of `values` (numbers; None = no data) with x `labels`; `unit` names the
    y axis (e.g. "kWh"). Returns markup (safe: every text is escaped)."""
    n = max(1, len(values))
    top = _nice_max(max([v for v in values if v is not None] or [0]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.8)
    esc = html.escape
    out = ['<svg id="%s" class="plot" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t" '
           'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'
           % (esc(css_id), WIDTH, HEIGHT, esc(css_id)),
           '<title id="%s-t">%s</title>' % (esc(css_id), esc(title))]
    for i in range(5):  # grid lines and y ticks
        v = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append('<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>'
                   % (LEFT, WIDTH - RIGHT, y, y))
        out.append('<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>'
                   % (LEFT - 6, y + 4, esc(_fmt(round(v, 3)))))
    out.append('<text class="axis" x="12" y="%d" transform="rotate(-90 12 %d)" '
               'text-anchor="middle">%s</text>' % (TOP + plot_h // 2, TOP + plot_h // 2, esc(unit)))
    for i, (v, label) in enumerate(zip(values, labels)):
        x = LEFT + i * slot + (slot - bar_w) / 2
        if v is not None:
            h = plot_h * v / top
            out.append('<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f">'
                       '<title>%s: %s %s</title></rect>'
                       % (x, TOP + plot_h - h, bar_w, h, esc(label), esc(_fmt(v)), esc(unit)))
        if i % tick_every == 0:
            out.append('<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>'
                       % (x + bar_w / 2, HEIGHT - BOTTOM + 16, esc(label)))
    out.append('<line class="axis-line" x1="%d" x2="%d" y1="%d" y2="%d"/>'
               % (LEFT, WIDTH - RIGHT, TOP + plot_h, TOP + plot_h))
    out.append("</svg>")
    return "".join(out)


def daily_chart(entries, tz, css_id="daily-plot"):
    """Daily energy bars (kWh) from daily-profile entries (dicts with start_at, import_wh)."""
    import datetime
    labels = [datetime.datetime.fromtimestamp(e["start_at"], tz).strftime("%d %b")
              for e in entries]
    values = [round(e["import_wh"] / 1000.0, 3) for e in entries]
    every = max(1, len(entries) // 10)
    return bar_chart(values, labels, "Energy per day (kWh), %d days" % len(entries), "kWh",
                     every, css_id)


def interval_chart(entries, tz, css_id="interval-plot"):
    """Interval profile bars (Wh per period) from interval-profile entries."""
    import datetime
    labels = [datetime.datetime.fromtimestamp(e["start_at"], tz).strftime("%H:%M")
              for e in entries]
    values = [e["import_wh"] for e in entries]
    every = max(1, len(entries) // 8)
    return bar_chart(values, labels, "Energy per interval (Wh), %d intervals" % len(entries),
                     "Wh", every, css_id)
