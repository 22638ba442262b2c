"""The geometry of the reports' charts, drawn by the server as SVG (no script): bars per day
(the automations' chart, app/automations/screens.chart) and one horizontal bar per site or
agent, its name on the left, scaled to a rounded maximum."""

from app.automations.screens import chart, nice_ceiling

WIDTH = 640
LABEL_W = 170  # the names' column
VALUE_W = 48  # the count after each bar
ROW_H, BAR_H, TOP = 26, 16, 8
NAME_CHARS = 24  # a longer name is cut in the drawing; the table beside it has it whole


def per_day(rows, days: int) -> dict:
    """The conversations-per-day bars for the report's day rows (oldest first)."""
    return chart([(row.key, row.conversations, 0) for row in rows], days)


def short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def hbars(rows) -> dict:
    """One bar per row (a site or an agent) for its number of conversations."""
    top = nice_ceiling(max((row.conversations for row in rows), default=0))
    plot_w = WIDTH - LABEL_W - VALUE_W
    bars = []
    for i, row in enumerate(rows):
        y = TOP + i * ROW_H
        w = round(plot_w * row.conversations / top, 1)
        bars.append({"name": short(row.label), "value": row.conversations, "y": y,
                     "w": w, "text_y": y + BAR_H - 3, "value_x": round(LABEL_W + w + 6, 1)})
    return {"bars": bars, "width": WIDTH, "height": TOP * 2 + max(1, len(rows)) * ROW_H,
            "left": LABEL_W, "name_x": LABEL_W - 8, "bar_h": BAR_H,
            "total": sum(row.conversations for row in rows)}
