"""Fetching user-supplied URLs without opening a door into the private network (SSRF).

Rules, applied to the first URL and again to every redirect:
- only `http` and `https`, no credentials in the URL, default or explicit port;
- the host name is resolved once; every address it resolves to must be public (`is_global`), which
  excludes loopback, private, link-local, multicast, unspecified, shared (CGNAT), reserved and
  documentation ranges, in IPv4 and IPv6, including IPv4-mapped/compatible and 6to4/Teredo/NAT64 forms;
  cloud metadata addresses are refused explicitly as well;
- the connection goes to the address that was checked (the URL is rewritten to the IP, with the
  original `Host` header and TLS SNI/certificate name), so a second DNS answer cannot swap in a
  private address (DNS rebinding);
- redirects are followed by hand, at most `max_redirects`;
- the whole fetch has one deadline and the body is counted while it streams, so a huge or endless body
  is cut at `max_bytes` + 1.

`allow` (for tests and private deployments) lists host names (exact match) and networks (CIDR) that may
be reached even though they are not public.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from apps.common.errors import APIError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = {301, 302, 303, 307, 308}


class UnsafeURLError(APIError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message, code="unsafe_url", param="url")


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 20 * 1024 * 1024
    timeout_seconds: float = 15.0
    max_redirects: int = 3
    allow: tuple[str, ...] = ()
    user_agent: str = "jan-server/0.1 (+https://github.com/janhq/jan-server)"

    def allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(entry, strict=False) for entry in self.allow if _is_network(entry)]

    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(entry.lower() for entry in self.allow if not _is_network(entry))


@dataclass(frozen=True)
class Fetched:
    url: str
    status_code: int
    headers: httpx.Headers
    content: bytes
    redirects: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        content_type: str = self.headers.get("content-type", "")
        return content_type.split(";")[0].strip().lower()


def is_public_address(address: Address) -> bool:
    """True when the address may be fetched from without an allow-list entry."""
    if address in _METADATA_ADDRESSES:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(address))
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class SafeFetcher:
    """Fetches one URL under a `FetchPolicy`; raises `APIError`s a client can act on."""

    def __init__(self, policy: FetchPolicy, *, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self._resolver = resolver
        self._networks = policy.allowed_networks()
        self._hosts = policy.allowed_hosts()

    async def get(self, url: str, *, accept: str = "*/*") -> Fetched:
        try:
            async with asyncio.timeout(self.policy.timeout_seconds):
                return await self._follow(url, accept)
        except TimeoutError as exc:
            raise APIError(
                504,
                f"Fetching the URL took longer than {self.policy.timeout_seconds:g}s.",
                code="fetch_timeout",
            ) from exc

    async def _follow(self, url: str, accept: str) -> Fetched:
        try:
            return await self._follow_redirects(url, accept)
        except httpx.HTTPError as exc:
            message = f"The connection to the remote server failed ({type(exc).__name__})."
            raise APIError(502, message, code="fetch_failed") from exc

    async def _follow_redirects(self, url: str, accept: str) -> Fetched:
        redirects: list[str] = []
        transport = httpx.AsyncHTTPTransport(retries=0)
        async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
            current = url
            while True:
                request = await self._pinned_request(client, current, accept)
                response = await client.send(request, stream=True)
                try:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        if len(redirects) >= self.policy.max_redirects:
                            raise APIError(
                                400, "The URL redirects too many times.", code="too_many_redirects"
                            )
                        redirects.append(current)
                        current = urljoin(current, response.headers["location"])
                        continue
                    content = await self._read_limited(response)
                    return Fetched(current, response.status_code, response.headers, content, redirects)
                finally:
                    await response.aclose()

    async def _pinned_request(self, client: httpx.AsyncClient, url: str, accept: str) -> httpx.Request:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UnsafeURLError("Only http and https URLs can be fetched.")
        if parts.username or parts.password:
            raise UnsafeURLError("URLs with credentials are not fetched.")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise UnsafeURLError("The URL has no host.")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise UnsafeURLError("The URL has an invalid port.") from exc
        address = await self._checked_address(host, port)
        target = httpx.URL(url).copy_with(host=str(address))
        headers = {
            "Host": parts.netloc.rsplit("@", 1)[-1],
            "Accept": accept,
            "User-Agent": self.policy.user_agent,
        }
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return client.build_request("GET", target, headers=headers, extensions=extensions)

    async def _checked_address(self, host: str, port: int) -> Address:
        literal = _literal_address(host)
        if literal is not None:
            candidates: Iterable[Address] = [literal]
        else:
            try:
                candidates = [ipaddress.ip_address(a.split("%")[0]) for a in await self._resolver(host, port)]
            except (OSError, UnicodeError) as exc:
                raise APIError(
                    400, f"The host '{host}' could not be resolved.", code="unresolvable_host"
                ) from exc
        candidates = list(candidates)
        if not candidates:
            raise APIError(400, f"The host '{host}' could not be resolved.", code="unresolvable_host")
        host_allowed = host in self._hosts
        for candidate in candidates:
            if not (host_allowed or is_public_address(candidate) or self._in_allowed_network(candidate)):
                raise UnsafeURLError(f"Refusing to fetch '{host}': it resolves to a non-public address.")
        return candidates[0]

    def _in_allowed_network(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self._networks)

    async def _read_limited(self, response: httpx.Response) -> bytes:
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"The remote content is larger than the limit of {limit} bytes.", code="too_large")


def _literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    # Shorthand IPv4 forms (`127.1`, `0x7f.1`, `2130706433`) that resolvers accept as addresses.
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return None
    return ipaddress.IPv4Address(packed)


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True
