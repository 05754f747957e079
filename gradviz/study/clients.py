"""Who a request comes from, for the researcher login's per-client budget: the connection's own address, or, only
when that address is a proxy we were told to trust, the address that proxy says it forwarded for.

X-Forwarded-For is written by whoever sent the request, so it is read from the right (the entry our nearest
trusted proxy appended) and only across trusted proxies: the first address that is not one is the client.
Trusting every sender (what the dashboard did by accident) would let anyone pick their own key; trusting none
would give every client behind a CDN one shared key.
"""
from __future__ import annotations

import ipaddress
import os

TRUSTED_PROXIES_ENV = "GRADVIZ_TRUSTED_PROXIES"
DEFAULT_TRUSTED_PROXIES = "127.0.0.1/32,::1/128"  # Caddy on loopback (deploy/Caddyfile)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_proxies(configured: str | None = None) -> list[Network]:
    """The proxies whose X-Forwarded-For is believed: GRADVIZ_TRUSTED_PROXIES (addresses or CIDR ranges, comma
    separated), else loopback. A malformed entry is an error, not silently dropped."""
    text = configured if configured is not None else os.environ.get(TRUSTED_PROXIES_ENV, DEFAULT_TRUSTED_PROXIES)
    networks = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"{TRUSTED_PROXIES_ENV}: {entry!r} is not an address or a CIDR range") from exc
    return networks


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def _trusted(address, proxies: list[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: list[Network] | None = None) -> str:
    """The client's address as text. `peer` is the connection's address (None means loopback: Streamlit hides
    127.0.0.1 and ::1); `forwarded_for` the X-Forwarded-For header, read only while the hop that wrote it is a
    trusted proxy. A malformed entry stops the walk there: the last trusted hop is named instead."""
    proxies = trusted_proxies() if proxies is None else proxies
    current = _address(peer) if peer else ipaddress.ip_address("127.0.0.1")
    if current is None:
        return "unknown"
    for hop in reversed((forwarded_for or "").split(",")):
        if not _trusted(current, proxies):
            break
        previous = _address(hop)
        if previous is None:
            break
        current = previous
    return str(current)
