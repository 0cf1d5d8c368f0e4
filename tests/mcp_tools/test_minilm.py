"""The NumPy all-MiniLM-L6-v2 encoder: exact pieces, batching, and sentence similarity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from apps.mcp_tools.services.embeddings import bundled_model_dir
from apps.mcp_tools.services.minilm import MAX_TOKENS, MiniLM, _erf


@pytest.fixture(scope="module")
def model() -> MiniLM:
    folder = bundled_model_dir()
    assert isinstance(folder, Path), "make install adds the embeddings extra and the model"
    return MiniLM(folder)


def test_erf_matches_the_standard_library() -> None:
    points = np.linspace(-6, 6, 20_001)
    error = max(abs(float(_erf(np.array([x]))[0]) - math.erf(x)) for x in points)
    assert error < 2e-7


def test_vectors_are_unit_length_and_384_wide(model: MiniLM) -> None:
    vectors = model.encode(["A cat sits on the mat.", "Quarterly revenue grew."])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_padding_in_a_batch_does_not_change_a_vector(model: MiniLM) -> None:
    short = "Short text."
    alone = model.encode([short])[0]
    batched = model.encode([short, "A much longer sentence that forces the short one to be padded a lot."])[0]
    assert np.abs(alone - batched).max() < 1e-5


def test_related_sentences_are_closer_than_unrelated_ones(model: MiniLM) -> None:
    cat, kitten, revenue = model.encode(
        ["A cat sits on the mat.", "A kitten is resting on a rug.", "Quarterly revenue grew by ten percent."]
    )
    assert float(cat @ kitten) > 0.5 > 0.1 > float(cat @ revenue)


def test_long_inputs_are_cut_at_the_model_limit(model: MiniLM) -> None:
    encoding = model.tokenizer.encode("word " * 1000)
    assert len(encoding.ids) == MAX_TOKENS
    assert model.encode(["word " * 1000]).shape == (1, 384)
