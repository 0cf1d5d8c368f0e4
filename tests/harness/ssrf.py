"""The addresses every user-supplied-URL fetch must refuse (media-api remote uploads, mcp-tools scrape).

One list, so the SSRF guard's own tests and each app's tests check the same targets. `fake_dns`
resolves the test host names: `evil.test` to loopback (a public-looking name pointing inside) and
`mixed.test` to one public and one private address (every answer must be public).
"""

from __future__ import annotations

UNSAFE_URLS: tuple[str, ...] = (
    "http://127.0.0.1/",
    "http://localhost/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[fd00:ec2::254]/",
    "http://0.0.0.0/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.0.0.1/",
    "http://100.100.100.200/",
    "http://evil.test/",
    "http://mixed.test/",
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "http://user:pass@93.184.216.34/",
)

_DNS = {
    "evil.test": ["127.0.0.1"],
    "public.test": ["127.0.0.1"],
    "mixed.test": ["93.184.216.34", "10.0.0.1"],
}


async def fake_dns(host: str, port: int) -> list[str]:
    if host not in _DNS:
        raise OSError("no such host")
    return _DNS[host]
