"""Where a webhook may go: `https` to addresses on the public internet only, or also plain `http`
to the networks WEBHOOKS_ALLOWED_NETWORKS names.

A URL is checked when it is subscribed (`check_url`, a ValueError for people) and again at every
delivery on the addresses its name resolves to then (`resolve`): the delivery connects to the
address checked, never looking the name up twice, so a DNS answer that changes in between (DNS
rebinding) cannot point a delivery at the app's own network. Every address the name resolves
to must pass, not only the first: a name that also resolves to 127.0.0.1 is refused.
"""

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.db.models import WEBHOOK_URL_LENGTH

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(ValueError):
    """Why a webhook URL may not be used, for people."""


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: what to connect to, and what to say in the request."""

    scheme: str  # "https" or "http"
    host: str  # the name (or address) in the URL: the Host header and TLS's server name
    port: int
    path: str  # with its query

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def allowed_networks(value: str | Iterable[str] | None) -> list[Network]:
    """WEBHOOKS_ALLOWED_NETWORKS: CIDRs, comma-separated (or a list); ValueError for a bad one."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]


def parse(url: str) -> Target:
    """The parts of a webhook URL; AddressRefused for one that cannot be a webhook's."""
    url = url.strip()
    if not url:
        raise AddressRefused("Give the URL the events go to.")
    if len(url) > WEBHOOK_URL_LENGTH:
        raise AddressRefused(f"A webhook URL is at most {WEBHOOK_URL_LENGTH} characters.")
    if any(character.isspace() or ord(character) < 32 for character in url):
        raise AddressRefused("A webhook URL has no spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"That is not a URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise AddressRefused("A webhook URL starts with https://.")
    if not parts.hostname:
        raise AddressRefused("A webhook URL names a host: https://example.com/hooks.")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("A webhook URL carries no user name or password: the signature proves who sent it.")
    if parts.fragment:
        raise AddressRefused("A webhook URL has no #fragment.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def permitted(address: Address, allowed: list[Network]) -> bool:
    """On the public internet, or in one of the allowed networks. An IPv4 address written as
    IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global or in_networks(address, allowed)


def in_networks(address: Address, networks: list[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in networks)


def resolve(target: Target, allowed: list[Network]) -> list[str]:
    """The addresses to connect to for `target`, all of them checked; AddressRefused when any is
    neither global nor allowed, when plain http goes anywhere but an allowed network, or when
    the name does not resolve."""
    try:
        found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"{target.host} does not resolve to an address ({exc}).") from exc
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in found))
    if not addresses:
        raise AddressRefused(f"{target.host} does not resolve to an address.")
    for text in addresses:
        address = ipaddress.ip_address(text)
        if not permitted(address, allowed):
            raise AddressRefused(
                f"{target.host} resolves to {address}, which is not on the public internet "
                "(WEBHOOKS_ALLOWED_NETWORKS can admit a network)."
            )
        if target.scheme == "http" and not in_networks(address, allowed):
            raise AddressRefused("A webhook URL on the public internet starts with https://.")
    return addresses


def check_url(url: str, allowed: list[Network]) -> str:
    """A URL fit to subscribe, trimmed; AddressRefused (a ValueError) saying why not."""
    resolve(parse(url), allowed)
    return url.strip()
