"""The media bucket on S3, and the one identity allowed to use it: media-api's service account.

Decisions:
- Private by construction: all four public-access blocks, bucket-owner-enforced ownership (no ACLs),
  SSE-S3 encryption, and a policy denying plain-HTTP access.
- Browsers upload straight to the bucket with presigned URLs from the web app's page, so CORS allows
  the web app origins (`gateway.corsOrigins`, the same list Kong allows); none: no CORS rule.
- Unfinished multipart uploads are aborted after `abandonedUploadDays`; prod keeps versions (and
  expires old ones after 30 days) and protects the bucket from deletion; elsewhere the bucket can be
  destroyed with the stack.
- Access is through EKS Pod Identity: a role trusting `pods.eks.amazonaws.com`, associated with the
  `media-api` service account in the apps namespace only, so no static keys exist anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.naming import Naming
from infra.object_storage import ObjectStoreEndpoint

_NONCURRENT_VERSION_DAYS = 30


@dataclass(frozen=True, kw_only=True)
class ObjectStoreArgs:
    naming: Naming
    production: bool
    abandoned_upload_days: int
    cors_origins: tuple[str, ...]
    """The web app origins (`gateway.corsOrigins`) browsers upload from with presigned URLs."""
    cluster_name: pulumi.Input[str]
    namespace: pulumi.Input[str]
    service_account: str
    region: str


class ObjectStore(pulumi.ComponentResource):
    """An S3 bucket and a Pod Identity association for one service account."""

    bucket_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    endpoint: ObjectStoreEndpoint

    def __init__(self, name: str, args: ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:ObjectStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-media",
            force_destroy=not args.production,
            tags=args.naming.tags("media"),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=args.production)),
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-media",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        blocked = aws.s3.BucketPublicAccessBlock(
            f"{name}-media",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-media",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=child,
        )
        if args.production:
            aws.s3.BucketVersioning(
                f"{name}-media",
                bucket=bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                opts=child,
            )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-media", bucket=bucket.id, rules=_lifecycle(args), opts=child
        )
        if args.cors_origins:
            aws.s3.BucketCorsConfiguration(
                f"{name}-media",
                bucket=bucket.id,
                cors_rules=[
                    aws.s3.BucketCorsConfigurationCorsRuleArgs(
                        allowed_origins=list(args.cors_origins),
                        allowed_methods=["GET", "PUT", "POST", "HEAD"],
                        allowed_headers=["*"],
                        expose_headers=["ETag"],
                        max_age_seconds=3000,
                    )
                ],
                opts=child,
            )
        aws.s3.BucketPolicy(
            f"{name}-media",
            bucket=bucket.id,
            policy=bucket.arn.apply(_tls_only),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[blocked])),
        )
        role = aws.iam.Role(
            f"{name}-media-api", assume_role_policy=iam.trust(iam.POD_IDENTITY_SERVICE), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-media-api", role=role.id, policy=bucket.arn.apply(_read_write), opts=child
        )
        aws.eks.PodIdentityAssociation(
            f"{name}-media-api",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=args.service_account,
            role_arn=role.arn,
            opts=child,
        )
        self.bucket_name = bucket.bucket
        self.role_arn = role.arn
        self.endpoint = ObjectStoreEndpoint(
            bucket=bucket.bucket,
            region=args.region,
            endpoint=None,
            credentials_secret=None,
            service_account=args.service_account,
        )
        self.register_outputs({"bucket_name": self.bucket_name})


def _lifecycle(args: ObjectStoreArgs) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    rules = [
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-abandoned-uploads",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=args.abandoned_upload_days
            ),
        )
    ]
    if args.production:
        rules.append(
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-old-versions",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=_NONCURRENT_VERSION_DAYS
                ),
            )
        )
    return rules


def _tls_only(bucket_arn: str) -> str:
    return iam.document(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    )


def _read_write(bucket_arn: str) -> str:
    return iam.document(
        [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket_arn},
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                "Resource": f"{bucket_arn}/*",
            },
        ]
    )
