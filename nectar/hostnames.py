"""The names a ``Host`` header (or an origin's ``host[:port]``) gives, as the API and luigid's guard both check them."""

from __future__ import annotations

#: the names of this machine every deployment answers to, on any port
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def host_name(host: str) -> str:
    """The lower-cased name of ``host[:port]`` (an IPv6 address keeps its brackets); empty when it is malformed or
    its port is not a number."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 address
        end = host.find("]")
        name, rest = host[: end + 1], host[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return ""
        port = rest[1:]
    else:
        name, _, port = host.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return ""
    return name.rstrip(".")  # "localhost." names the same host
