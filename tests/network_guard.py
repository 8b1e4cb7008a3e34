"""A network guard for worker processes: any attempt to leave the machine is refused and audited.

A process started with :func:`guarded_env`'s environment imports a ``sitecustomize``
module (found through PYTHONPATH) that wraps ``socket.getaddrinfo``,
``socket.socket.connect`` and ``connect_ex``: any non-loopback lookup or connection is
written to an audit file and refused. gRPC's own sockets live in its C core and only
serve 127.0.0.1 here. A refused attempt would also surface as a failed load, so an
empty audit after loading and serving shows both "nothing tried to reach the network"
and "everything works offline". The shared stack (tests/conftest.py) and the emotion
worker groups (tests/emotion_workers.py) run under it; tests/test_zero_network.py checks
the guard itself and the stack's audit, tests/test_emotion_worker.py the groups'.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.procs import ROOT

__all__ = ["GUARD", "guarded_env"]

GUARD = textwrap.dedent('''
    import errno, ipaddress, os, socket

    _AUDIT = os.environ["NET_AUDIT_FILE"]
    _LOCAL_NAMES = {"localhost", "ip6-localhost", ""}

    def _is_local(host):
        if host is None or str(host) in _LOCAL_NAMES:
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what):
        with open(_AUDIT, "a") as audit:
            audit.write(f"{os.getpid()} {what}\\n")
        raise OSError(errno.ENETUNREACH, f"network disabled by test: {what}")

    _getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            _refuse(f"getaddrinfo {host}")
        return _getaddrinfo(host, *args, **kwargs)
    socket.getaddrinfo = getaddrinfo

    for _name in ("connect", "connect_ex"):
        _original = getattr(socket.socket, _name)
        def _guarded(self, address, _original=_original, _name=_name):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
                _refuse(f"{_name} {address}")
            return _original(self, address)
        setattr(socket.socket, _name, _guarded)
''')


def guarded_env(directory: Path) -> tuple[dict[str, str], Path]:
    """The environment that runs the guard in every Python process started with it, and
    its audit file (empty while nothing has tried the network); both under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(GUARD)
    audit = directory / "audit.log"
    audit.touch()
    return {"PYTHONPATH": f"{directory}:{ROOT}", "NET_AUDIT_FILE": str(audit)}, audit
