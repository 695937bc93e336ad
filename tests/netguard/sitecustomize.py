"""A network guard for every Python process started with this folder first on PYTHONPATH (tests/test_offline.py).

Python imports `sitecustomize` at start-up, so `dvc repro`, each stage it runs (`python -m stages.X`), the
`facepaint` command and any process they start load this module before any of their own code. It refuses
every outbound connection and every name lookup of a host other than this machine, records each attempt
(the process, the host and port, a short stack) as one JSON line in $FACEPAINT_NETGUARD_LOG, and raises the
error an offline machine would give: a library that would download something on a machine with internet shows
up in the log, not only as a failure it may hide. Loopback (127.0.0.0/8, ::1, localhost, this host's own name)
and unix sockets are allowed: the app's own server and its clients use them.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import sys
import traceback

_LOG = os.environ.get("FACEPAINT_NETGUARD_LOG")
_STDLIB = os.path.dirname(os.__file__)
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", ""}
try:
    _LOCAL_NAMES.add(socket.gethostname().lower())
except OSError:  # pragma: no cover
    pass


def _local(host) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): a local (bind) address
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").split("%")[0].lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than this machine's: resolving it is the first step out
    return ip.is_loopback or ip.is_unspecified


def _record(kind: str, host, port) -> None:
    frames = [f for f in traceback.extract_stack() if f.filename != __file__]
    libraries = [f for f in frames if "site-packages" in f.filename or not f.filename.startswith(_STDLIB)]
    project = [f for f in libraries if "site-packages" not in f.filename]  # the caller in the project, if any
    lines = [f"{f.filename}:{f.lineno} {f.name}" for f in [*project[-2:], *libraries[-8:]] or frames[-8:]]
    stack = list(dict.fromkeys(lines))  # a thread's stack may hold the standard library's frames only
    host = host.decode(errors="replace") if isinstance(host, bytes) else str(host)
    entry = {"pid": os.getpid(), "argv": sys.argv[:4], "kind": kind, "host": host, "port": port, "stack": stack}
    with open(_LOG, "a") as f:  # one short write per line: whole lines from every process
        f.write(json.dumps(entry) + "\n")


def _refused(kind: str, host, port) -> OSError:
    _record(kind, host, port)
    if kind == "getaddrinfo":
        return socket.gaierror(socket.EAI_NONAME, f"netguard: lookup of {host} refused (offline test)")
    return OSError(errno.ENETUNREACH, f"netguard: connection to {host}:{port} refused (offline test)")


def _check_address(kind: str, sock, address) -> None:
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return  # a unix socket, a netlink one, ...
    if not _local(address[0]):
        raise _refused(kind, address[0], address[1] if len(address) > 1 else None)


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
_getaddrinfo, _create_connection = socket.getaddrinfo, socket.create_connection
_gethostbyname, _gethostbyname_ex = socket.gethostbyname, socket.gethostbyname_ex


def connect(self, address):
    _check_address("connect", self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check_address("connect", self, address)
    return _connect_ex(self, address)


def _literal(host) -> bool:
    try:
        ipaddress.ip_address((host.decode() if isinstance(host, bytes) else str(host)).strip("[]").split("%")[0])
        return True
    except ValueError:
        return False


def getaddrinfo(host, port, *args, **kwargs):
    if not _local(host) and not _literal(host):  # an address's "lookup" asks no server: its connect is refused
        raise _refused("getaddrinfo", host, port)
    return _getaddrinfo(host, port, *args, **kwargs)


def create_connection(address, *args, **kwargs):
    if not _local(address[0]):
        raise _refused("create_connection", address[0], address[1])
    return _create_connection(address, *args, **kwargs)


def gethostbyname(host):
    if not _local(host) and not _literal(host):
        raise _refused("getaddrinfo", host, None)
    return _gethostbyname(host)


def gethostbyname_ex(host):
    if not _local(host) and not _literal(host):
        raise _refused("getaddrinfo", host, None)
    return _gethostbyname_ex(host)


def install(log: str, set_attr=setattr) -> None:
    """Guard this process, recording into `log` (`set_attr`: pytest's monkeypatch.setattr guards one test only)."""
    module = sys.modules[__name__]
    set_attr(module, "_LOG", log)
    for owner, name, guard in (
        (socket.socket, "connect", connect),
        (socket.socket, "connect_ex", connect_ex),
        (socket, "getaddrinfo", getaddrinfo),
        (socket, "create_connection", create_connection),
        (socket, "gethostbyname", gethostbyname),
        (socket, "gethostbyname_ex", gethostbyname_ex),
    ):
        set_attr(owner, name, guard)


def attempts(log) -> list[dict]:
    """The attempts recorded in `log`, one dict each (none when it was never written)."""
    try:
        with open(log) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


if _LOG:
    install(_LOG)
