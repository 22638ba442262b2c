"""Usage insight to improve the service: first-party counters per day, with no identifier,
no IP address and no device storage; a person may object; staff see the charts."""


def init_app(app) -> None:
    pass
