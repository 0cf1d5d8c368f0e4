"""The object-store interface every media bucket backend satisfies (AWS S3 or the in-cluster store).

A backend provides a bucket and says how media-api reaches it; `media_env()` turns that into
media-api's settings (`apps/media_api/settings.py`), so the apps' release does not know which backend
it runs on. Decisions:
- On AWS there are no static keys: media-api's service account is associated with an IAM role (EKS Pod
  Identity) and boto3's default credential chain picks the credentials up; `credentials_secret` is None.
- An S3-compatible store in the cluster has no identity service, so its keys live in a Secret in the
  apps namespace (`MEDIA_S3_ACCESS_KEY` / `MEDIA_S3_SECRET_KEY`), loaded whole by media-api.
- Browsers cannot reach an in-cluster store, so media-api streams downloads itself there
  (`MEDIA_PROXY_DOWNLOAD`), and presigned upload URLs name `public_endpoint` (`MEDIA_S3_PUBLIC_ENDPOINT`),
  which in the dev stack is the store's port-forward on localhost.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

ACCESS_KEY_ENV = "MEDIA_S3_ACCESS_KEY"
SECRET_KEY_ENV = "MEDIA_S3_SECRET_KEY"  # noqa: S105 - an environment variable name


@dataclass(frozen=True, slots=True)
class ObjectStoreEndpoint:
    """Where media-api's bucket lives and how media-api authenticates to it."""

    bucket: pulumi.Output[str]
    region: str
    # None: AWS's regional endpoint.
    endpoint: str | None
    # A Secret in the apps namespace with ACCESS_KEY_ENV and SECRET_KEY_ENV; None: Pod Identity.
    credentials_secret: str | None
    # The service account the backend trusts (Pod Identity) or expects (in-cluster: informational).
    service_account: str
    # Where clients reach the store when that differs from `endpoint` (presigned URLs).
    public_endpoint: str | None = None
    # media-api creates the bucket (and its CORS rule) at start: a store without a bucket API of ours.
    create_bucket: bool = False
    ready: pulumi.Resource | None = None

    def media_env(self) -> dict[str, pulumi.Input[str]]:
        env: dict[str, pulumi.Input[str]] = {"MEDIA_S3_BUCKET": self.bucket, "MEDIA_S3_REGION": self.region}
        if self.endpoint is not None:
            env |= {
                "MEDIA_S3_ENDPOINT": self.endpoint,
                "MEDIA_S3_USE_PATH_STYLE": "true",
                "MEDIA_PROXY_DOWNLOAD": "true",
            }
        if self.create_bucket:
            env["MEDIA_S3_CREATE_BUCKET"] = "true"
        if self.public_endpoint is not None:
            env["MEDIA_S3_PUBLIC_ENDPOINT"] = self.public_endpoint
        return env
