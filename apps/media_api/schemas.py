"""Wire models of media-api (our own resources: strict, unknown fields refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from apps.common.ids import jan_id
from apps.media_api.db import MediaObject


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataUrlSource(Strict):
    # The reference system's spellings are all accepted.
    type: Literal["data_url", "datauri", "dataurl"]
    data_url: str


class RemoteUrlSource(Strict):
    type: Literal["remote_url", "remoteuri", "remote"]
    url: str = Field(max_length=4096)


Source = Annotated[DataUrlSource | RemoteUrlSource, Field(discriminator="type")]


class CreateMediaRequest(Strict):
    source: Source
    filename: str | None = Field(None, max_length=255)


class PrepareUploadRequest(Strict):
    mime_type: str = Field(max_length=64)
    bytes: int = Field(ge=1)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    filename: str | None = Field(None, max_length=255)


class MediaInfo(BaseModel):
    id: str
    object: Literal["media"] = "media"
    status: str
    mime_type: str
    bytes: int
    sha256: str | None
    filename: str | None
    created_at: int

    @classmethod
    def of(cls, media: MediaObject) -> MediaInfo:
        return cls(
            id=jan_id(media.id),
            status=media.status,
            mime_type=media.mime_type,
            bytes=media.bytes,
            sha256=media.sha256,
            filename=media.filename,
            created_at=int(media.created_at.timestamp()),
        )


class MediaUpload(MediaInfo):
    """A stored object with a presigned GET URL valid until `expires_at` (unix seconds)."""

    deduplicated: bool
    url: str
    expires_at: int


class PresignedMedia(BaseModel):
    """A fresh presigned GET URL of a stored object, valid for `expires_in` seconds (until `expires_at`)."""

    id: str
    object: Literal["media.presigned_url"] = "media.presigned_url"
    url: str
    mime_type: str
    expires_in: int
    expires_at: int


class PreparedUpload(BaseModel):
    id: str
    object: Literal["media.upload"] = "media.upload"
    upload_url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_at: int


class MediaList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MediaInfo]
    first_id: str | None
    last_id: str | None
    has_more: bool


class MediaDeleted(BaseModel):
    id: str
    object: Literal["media.deleted"] = "media.deleted"
    deleted: bool = True
