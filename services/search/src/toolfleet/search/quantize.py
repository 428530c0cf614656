"""int8 encoders: post-training quantization of the ONNX graph for OpenVINO with NNCF.

NNCF runs the fp32 graph over a few hundred calibration passages, records the range of the
inputs of every matrix product, and inserts int8 quantize/dequantize pairs
(``ModelType.TRANSFORMER``: SmoothQuant, and the operators known to lose accuracy in int8
left in float); OpenVINO then runs those products on the CPU's int8 dot-product units
(AVX-512 VNNI, AMX). The passages calibrate the model, so they are part of its identity: the
build takes the corpus's first :data:`CALIBRATION_PASSAGES` passages, records their digest in
the encoder spec (``calibration``), and keeps the quantized IR in the encoder cache keyed by
the model's graph, the token limit, the passage prefix and that digest. A service that finds
no IR in its cache quantizes again from the index's own first passages, which give the same
digest and so the same model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from toolfleet.search.encoders import EncoderSpec

QUANTIZATION = "overflow-fix-all"  # part of the cached IR's key: a change makes a new one
CALIBRATION_PASSAGES = 300  # NNCF's default subset; more changed nothing measurable


def calibration_digest(texts: list[str]) -> str:
    """The digest of a calibration set (recorded in the spec's ``calibration``)."""
    h = hashlib.sha256(str(len(texts)).encode())
    for text in texts:
        h.update(b"\0" + text.encode())
    return h.hexdigest()[:16]


def calibrate(spec: EncoderSpec, calibration: Callable[[], list[str]]) -> EncoderSpec:
    """``spec`` with the digest of its calibration passages, its int8 graph made (in the
    cache) if need be; any other precision as it is."""
    if spec.precision != "int8":
        return spec
    texts = calibration()
    spec = spec.model_copy(update={"calibration": calibration_digest(texts)})
    quantized_path(spec, lambda: texts)
    return spec


def quantized_path(spec: EncoderSpec, calibration: Callable[[], list[str]] | None) -> Path:
    """The int8 OpenVINO IR (``.xml``, weights in the ``.bin`` beside it) of ``spec``,
    quantized now from the passages ``calibration`` gives if the cache lacks it."""
    from toolfleet.search.encoders import EncoderError, cache_dir, onnx_path

    if spec.calibration is None:
        raise EncoderError(
            "an int8 encoder needs its calibration passages: build the index with "
            "`toolfleet search build --precision int8`"
        )
    source = onnx_path(spec.model_copy(update={"runtime": "openvino"}))
    key = hashlib.sha256(
        f"{source.name}|{spec.max_length}|{spec.passage_prefix}|{spec.calibration}|"
        f"{QUANTIZATION}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"{source.stem}-int8-{key}.xml"
    if path.is_file():
        return path
    if calibration is None:
        raise EncoderError(f"the int8 encoder {path.name} is not in the encoder cache")
    texts = calibration()
    if calibration_digest(texts) != spec.calibration:
        raise EncoderError(
            "the calibration passages differ from those the index was built with "
            "(was the corpus changed?): rebuild the index"
        )
    quantize(source, [spec.passage_prefix + t for t in texts], spec, path)
    return path


def quantize(source: Path, texts: list[str], spec: EncoderSpec, path: Path) -> None:
    """Write the int8 IR of the ONNX graph ``source`` to ``path``, calibrated on ``texts``."""
    import nncf
    import openvino as ov
    from nncf.common.logging.logger import set_log_level
    from toolfleet.search.encoders import EncoderError, load_tokenizer

    if not texts:
        raise EncoderError("no passages to calibrate the int8 encoder on")
    set_log_level(logging.ERROR)  # its progress bars and notes are no use to a build
    core = ov.Core()
    model = core.read_model(str(source))
    names = {next(iter(i.get_names())) for i in model.inputs}
    tokenizer = load_tokenizer(spec.directory(), spec.max_length)
    samples = []
    for encoding in tokenizer.encode_batch(texts):
        sample = {
            "input_ids": np.array([encoding.ids], np.int64),
            "attention_mask": np.ones((1, len(encoding.ids)), np.int64),
        }
        if "token_type_ids" in names:
            sample["token_type_ids"] = np.zeros_like(sample["input_ids"])
        samples.append(sample)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        # 7-bit weights in every layer: CPUs without VNNI (AVX2 only) multiply u8 by s8
        # with an int16 sum that saturates, and the IR may run on another CPU than the one
        # that made it
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            overflow_fix=nncf.OverflowFix.ENABLE
        ),
    )
    # the pair is written in a directory of its own and moved in, weights first: a process
    # that finds the .xml finds the whole model
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        ov.save_model(quantized, str(Path(tmp) / "model.xml"))
        os.replace(Path(tmp) / "model.bin", path.with_suffix(".bin"))
        os.replace(Path(tmp) / "model.xml", path)
