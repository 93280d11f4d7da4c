"""Where alerts may be sent: http(s) URLs of public hosts only. No Django.

A webhook URL is chosen by the user who writes the rule, so without a check anyone allowed to create
rules could make the server POST to its own network (the cloud metadata address, an admin port on
localhost, a database on the LAN): server-side request forgery. Addresses that are private,
loopback, link-local, multicast, reserved or unspecified are refused, for IPv4 and IPv6 (including
IPv4 mapped into IPv6), unless the deployment allows them (ALERTS_WEBHOOK_ALLOW_PRIVATE, for a
receiver on the same network, and for tests with a local server).

The check runs twice: when the rule is saved (`destination_error`, a clear validation error) and
when each request is sent, since a name may resolve elsewhere by then. At send time the senders
check the address they actually connected to (`refusal_for_address` on the socket's peer), which
also defeats a name that resolves to a public address for the check and a private one for the
connection (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")

Resolver = Callable[[str], Iterable[str]]


class BlockedDestination(OSError):
    """A request to an address alerts may not reach (an OSError so urllib passes it through)."""


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6); an OSError if it does not resolve."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def refusal_for_address(address: str) -> str | None:
    """Why alerts may not send to this IP address, or None if it is a public one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, flagged in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flagged:
            return f"{ip} is a {kind} address"
    if not ip.is_global:  # shared address space (100.64/10) and other non-public ranges
        return f"{ip} is not a public address"
    return None


def destination_error(url: str, *, allow_private: bool, resolve: Resolver = resolve_host) -> str | None:
    """Why alerts may not POST to `url`, or None if they may.

    Only http and https. Unless `allow_private`, the host must be a public IP address or a name
    whose every address is public. A name that does not resolve (yet) passes: it cannot reach
    anything now, and every request checks the address it connects to.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        return f"only http and https URLs are allowed, not {parts.scheme or 'no scheme'!r}"
    if not host:
        return "the URL has no host"
    if allow_private:
        return None
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = list(resolve(host))
        except OSError:
            return None
    for address in addresses:
        reason = refusal_for_address(address)
        if reason is not None:
            return f"{host} is not allowed: {reason} (alerts only go to public addresses)"
    return None
