"""A fake of media-api's content endpoint, as mcp-tools' file tools read it."""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response


@dataclass
class FakeMedia:
    """media-api's content endpoint: files keyed by id, each readable by its owner only.

    Like media-api, it answers with a 307 to a presigned URL on the object store (a second server,
    which refuses requests that carry an Authorization header, as S3 does); files whose id ends in
    `p` are streamed through instead, as with `media_proxy_download`.
    """

    files: dict[str, tuple[str, str, bytes]]
    url: str = ""
    store_url: str = ""

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route("/v1/media/{media_id}/content", self._content, methods=["GET"])
        self.store = FastAPI()
        self.store.add_api_route("/bucket/{media_id}", self._object, methods=["GET"])

    async def _content(self, media_id: str, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            subject = jwt.decode(token, options={"verify_signature": False})["sub"]
        except jwt.PyJWTError:
            return JSONResponse({"error": {"message": "unauthorized"}}, status_code=401)
        entry = self.files.get(media_id)
        if entry is None or entry[0] != subject:
            return JSONResponse({"error": {"message": "not found"}}, status_code=404)
        if media_id.endswith("p"):
            return Response(entry[2], media_type=entry[1])
        return RedirectResponse(f"{self.store_url}/bucket/{media_id}?X-Amz-Signature=abc", status_code=307)

    async def _object(self, media_id: str, request: Request) -> Response:
        if "authorization" in request.headers or "X-Amz-Signature" not in request.query_params:
            return Response(b"<Error><Code>InvalidArgument</Code></Error>", status_code=400)
        _, content_type, content = self.files[media_id]
        return Response(content, media_type=content_type)
