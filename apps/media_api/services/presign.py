"""Presigned GET URLs for our own object keys, signed without boto3's per-call pipeline.

`/v1/media/resolve` signs one URL per placeholder before every inference that carries media. boto3's
`generate_presigned_url` spends most of its ~0.15-0.4 ms per call on what does not change between
calls: endpoint rules, parameter validation and serialisation, event hooks, the signing-key
derivation. The URL of a GET differs per call only by the key, the time and the signature, so
`GetPresigner` takes everything else from one URL boto3 signs at startup (scheme, host, addressing
style, credential scope) and computes SigV4's query signature itself (AWS's published algorithm:
a canonical request, its SHA-256, one HMAC with a signing key derived once per day).

It only takes what it reproduces exactly and leaves the rest to boto3: static credentials (no session
token, nothing to refresh), a URL with exactly SigV4's query parameters, and keys made of plain path
segments (`media/<id>.<ext>`: nothing to escape or normalise). The test signs with both at the same
instant and requires the same URL, for path-style and virtual-hosted buckets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

PROBE_KEY = "jan-presign-probe"
_ALGORITHM = "AWS4-HMAC-SHA256"
_SIGV4_PARAMS = {
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
}
# Segments of letters, digits, `.`, `_`, `-`, none starting with a dot: the same in a URL and in
# SigV4's canonical path, with no `..`, `.` or empty segment a URL normaliser could rewrite.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class GetPresigner:
    def __init__(
        self,
        *,
        origin: str,
        path_prefix: str,
        host: str,
        access_key: str,
        secret_key: str,
        region: str,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._origin = origin
        self._path_prefix = path_prefix
        self._host = host
        self._credential_prefix = quote(access_key, safe="-_.~") + "%2F"
        self._secret = ("AWS4" + secret_key).encode()
        self._region = region
        self._clock = clock
        self._day_key: tuple[str, bytes] = ("", b"")

    @classmethod
    def from_probe(
        cls, probe_url: str, *, secret_key: str, clock: Callable[[], datetime] = _utc_now
    ) -> GetPresigner | None:
        """A presigner that reproduces `probe_url` (boto3's GET URL of `PROBE_KEY`), or None when that
        URL carries anything this does not reproduce (a session token, other parameters)."""
        parts = urlsplit(probe_url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if set(query) != _SIGV4_PARAMS or query["X-Amz-SignedHeaders"] != "host":
            return None
        if query["X-Amz-Algorithm"] != _ALGORITHM or not parts.path.endswith("/" + PROBE_KEY):
            return None
        access_key, _day, region, service, terminal = query["X-Amz-Credential"].split("/")
        if service != "s3" or terminal != "aws4_request":
            return None
        host = parts.netloc
        if parts.port is not None and str(parts.port) == _DEFAULT_PORTS.get(parts.scheme):
            host = host.rsplit(":", 1)[0]
        return cls(
            origin=f"{parts.scheme}://{parts.netloc}",
            path_prefix=parts.path[: -len(PROBE_KEY)],
            host=host,
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            clock=clock,
        )

    @staticmethod
    def handles(key: str) -> bool:
        return _PLAIN_KEY.fullmatch(key) is not None

    def presign_get(self, key: str, expires_in: int) -> str:
        """A GET URL for `key` valid `expires_in` seconds from now; `key` must pass `handles`."""
        amz_date = self._clock().strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        query = (
            f"X-Amz-Algorithm={_ALGORITHM}&X-Amz-Credential={self._credential_prefix}"
            f"{scope.replace('/', '%2F')}&X-Amz-Date={amz_date}&X-Amz-Expires={expires_in}"
            "&X-Amz-SignedHeaders=host"
        )
        path = self._path_prefix + key
        canonical = f"GET\n{path}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n{digest}".encode()
        signature = hmac.new(self._signing_key(day), to_sign, hashlib.sha256).hexdigest()
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"

    def _signing_key(self, day: str) -> bytes:
        cached_day, key = self._day_key
        if cached_day != day:
            key = self._secret
            for part in (day, self._region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day_key = (day, key)
        return key
