"""Which addresses requests our servers make for a user may reach (webhooks today).

A webhook is a request our servers make for a user, so it must not reach what only they can
reach: the cloud metadata service, the database, a neighbour's admin port. Checked when a hook is
made (the web app) and again at each POST (the worker), which then connects to the address it
checked.
"""

import ipaddress
import socket

from app.core.config import get_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def vet_host(host: str) -> tuple[list[IPAddress], str | None]:
    """The addresses ``host`` is or resolves to, and why webhooks may not POST there (None: they
    may). A webhook is a request our servers make for a user, so it must not reach what only
    they can reach (the cloud metadata service, the database, a neighbour's admin port): a host
    that is or resolves to a loopback, private, link-local or reserved address is refused unless
    TUNEDECK_WEBHOOK_ALLOWED_NETWORKS names its network. An IPv6 address that carries an IPv4 one
    (IPv4-mapped or -compatible, NAT64, 6to4, Teredo) is judged by the IPv4 address it carries.
    A host that does not resolve gives no addresses and no refusal: a hook may be made for a name
    not in DNS yet, but nothing is ever sent to it until it resolves (see ``delivery.post``)."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return [], None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found))
    allowed = _allowed_networks(get_settings().webhook_allowed_networks)
    for address in addresses:
        judged = embedded_ipv4(address) or address
        if not judged.is_global and not any(judged in network for network in allowed):
            shown = host if host.strip("[]") == str(address) else f"{host} ({address})"
            inside = f", which carries {judged}" if judged is not address else ""
            refusal = (
                f"webhooks may not be sent to {shown}{inside}, an internal address; an admin can allow its"
                " network with TUNEDECK_WEBHOOK_ALLOWED_NETWORKS"
            )
            return addresses, refusal
    return addresses, None


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated, still routed by some stacks


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (and reaches, through a translator or tunnel), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client is where packets go
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64) or address in _IPV4_TRANSLATED:
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1 (judged as themselves)
        return low32
    return None


def _allowed_networks(setting: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip()]
