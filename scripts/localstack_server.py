"""Runs LocalStack's gateway bound to the GATEWAY_LISTEN host only (scripts/stack.sh).

LocalStack 4.13's twisted gateway ignores the host part of GATEWAY_LISTEN and listens on
every interface (`aws/serving/twisted.py`: "TODO: interface = host?"), which would expose
the local stack's buckets and queues, unauthenticated, to any network the machine is on,
and takes the port on the Docker bridge that scripts/docker.sh forwards to 127.0.0.1.
This passes the configured host to twisted's endpoint, then starts LocalStack as usual.
"""
import os
import runpy

from twisted.internet import endpoints

_listen = os.environ.get("GATEWAY_LISTEN", "127.0.0.1:4566").split(",")[0]
_host = _listen.rsplit(":", 1)[0] if ":" in _listen else _listen
_tcp4 = endpoints.TCP4ServerEndpoint


def _bound(reactor, port, backlog=50, interface=""):
    return _tcp4(reactor, port, backlog, interface or _host)


endpoints.TCP4ServerEndpoint = _bound
runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
