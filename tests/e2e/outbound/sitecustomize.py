"""Loaded by the Python processes of the outbound-connection test's server only (its
PYTHONPATH names this folder): every socket connect the web process and the worker make is
written to the file named by LUMNAR_TEST_CONNECTIONS_LOG, through Python's audit hooks, which
see every connect from Python code and the libraries it calls (SMTP, Stripe, httpx, redis)."""

import os
import sys

_LOG = os.environ.get("LUMNAR_TEST_CONNECTIONS_LOG")

if _LOG:

    def _record(event, args):
        if event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple) and len(address) >= 2:  # IPv4/IPv6, not Unix sockets
                with open(_LOG, "a", encoding="utf-8") as fh:
                    fh.write(f"{address[0]} {address[1]} {os.getpid()}\n")

    sys.addaudithook(_record)
