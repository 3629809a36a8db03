"""Which Host names the server answers to: the guard against DNS rebinding (docs/security.md).

A web site can point a DNS name it owns at this machine (`evil.example` -> 127.0.0.1 or the LAN
address, after the browser has loaded the site's page). The browser then treats this server as
`evil.example`, so that page is "same origin" with it and can drive an unkeyed server. What
gives it away is the Host header: the browser sends the attacker's name. So requests must name
this server by a name it is known by:

- any IP address literal (`127.0.0.1`, `[::1]`, `192.168.1.5`): a browser only sends one when
  the page itself was loaded from that address, so no other site can be behind it;
- `localhost` and names under `.localhost` (browsers resolve them to loopback themselves);
- the address given to `--host`, and this machine's host name (short and as configured);
- every `--allowed-host` entry: an exact name, `.example.com` for it and its subdomains, or `*`
  (any name: for a reverse proxy that checks Host itself).

The port is not part of the check (the browser connected to our port whatever name it used).
A request without a Host header is not from a browser (they always send one) and passes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from functools import lru_cache
from typing import Iterable

WILDCARD_BINDS = ("0.0.0.0", "::", "")
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")


def machine_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (best effort, no traffic sent)."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect: picks the outgoing interface only
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    out = []
    for ip in found:
        if not ip.startswith("127.") and ip != "0.0.0.0" and ip not in out:
            out.append(ip)
    return out


@lru_cache(maxsize=1)
def machine_names() -> tuple[str, ...]:
    """This machine's host name, and its first label if it has dots. No DNS lookup (a reverse
    lookup can hang for seconds where the resolver is unreachable)."""
    name = socket.gethostname().strip().lower().rstrip(".")
    names = [name] if name else []
    if "." in name:
        names.append(name.split(".", 1)[0])
    return tuple(names)


def host_name(header: str) -> str | None:
    """The name in a Host header value, lower-case, without port, brackets or a final dot;
    None when it is not a valid host (a client's bytes, never trusted)."""
    value = header.strip().lower()
    if value.startswith("["):  # [v6]:port
        end = value.find("]")
        if end < 0 or (value[end + 1:] and not re.fullmatch(r":\d{1,5}", value[end + 1:])):
            return None
        literal = value[1:end]
        return literal if _is_ip(literal) else None
    name, sep, port = value.partition(":")
    if sep and not re.fullmatch(r"\d{1,5}", port):
        return None
    name = name.rstrip(".")
    return name if name and (_is_ip(name) or _NAME.match(name)) else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_allowed_host(entry: str) -> str:
    """One --allowed-host value, normalised; ValueError with one line for what cannot be a name."""
    value = entry.strip().lower()
    if value == "*":
        return value
    bare = value[1:] if value.startswith(".") else value
    if not bare or "/" in bare or host_name(bare) is None:
        raise ValueError(f"--allowed-host needs a host name such as chat.example.com, .example.com "
                         f"(with subdomains) or *, not {entry!r}")
    name = host_name(bare)
    return "." + name if value.startswith(".") else name


class HostPolicy:
    """The names a server bound to `bind_host` answers to (module docstring)."""

    def __init__(self, bind_host: str, allowed: Iterable[str] = ()):
        self.any = False
        self.names: set[str] = {"localhost"}
        self.suffixes: list[str] = [".localhost"]
        bind = host_name(bind_host) if bind_host not in WILDCARD_BINDS else None
        if bind:
            self.names.add(bind)
        self.names.update(machine_names())
        for entry in allowed:
            value = check_allowed_host(entry)
            if value == "*":
                self.any = True
            elif value.startswith("."):
                self.names.add(value[1:])
                self.suffixes.append(value)
            else:
                self.names.add(value)

    def allows(self, header: str | None) -> bool:
        if header is None or self.any:
            return True
        name = host_name(header)
        if name is None:
            return False
        return _is_ip(name) or name in self.names or any(name.endswith(s) for s in self.suffixes)

    def describe(self) -> str:
        """For the console: what the server answers to."""
        if self.any:
            return "any name (--allowed-host *)"
        shown = sorted(self.names - {"localhost"})
        extra = [f"*{s}" for s in self.suffixes if s != ".localhost"]
        return ", ".join(["localhost", *shown, *extra, "any IP address"])
