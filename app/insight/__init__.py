"""Usage insight to improve the service: first-party counters per day, with no identifier,
no IP address and no device storage; a person may object; staff see the charts.

Other areas count a feature event with `insight.count("chat.reply_sent")` (the names are
fixed in app/insight/service.py EVENTS)."""

from app.insight.service import count, counted

__all__ = ["count", "counted", "init_app"]


def init_app(app) -> None:
    from flask import request

    from app.insight import service

    @app.after_request
    def _count_page_view(response):
        # Only adds one to a number in this process's memory: the write happens every few
        # seconds in the background (see app/insight/service.py).
        service.count_page(request, response)
        return response

    # The settings section asks for its state only when the settings page renders it.
    app.add_template_global(service.objected_now, "insight_objected")
