"""An ONNX graph of a BERT-family encoder, made from its Hugging Face weights without torch.

The usual way to get an ONNX model is ``torch.onnx.export`` (or Optimum, which calls it);
torch brings gigabytes of CUDA libraries to a CPU service, so this module writes the same
graph with ``onnx.helper`` from the checkpoint's ``config.json`` and ``model.safetensors``:
embeddings (word + absolute position + token type 0), ``num_hidden_layers`` post-LayerNorm
transformer layers with exact (erf) GELU, and, when the checkpoint has one, BERT's pooler.
That covers BERT, MiniLM, e5, bge, gte, Contriever and the like (``model_type`` ``bert``);
other architectures need an ONNX file of their own (see :mod:`toolfleet.search.encoders`).
ONNX Runtime fuses the LayerNorm and GELU patterns when it loads the graph; for it the
attention is written as its fused ``com.microsoft.Attention`` operator (``fused``), for other
runtimes (OpenVINO) in standard operators.

Inputs ``input_ids`` and ``attention_mask`` (int64, batch x tokens); outputs
``last_hidden_state`` (float32, batch x tokens x hidden) and, if present, ``pooler_output``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

OPSET = 17  # LayerNormalization is a standard op from 17 on
PREFIXES = ("bert.", "model.", "encoder.model.")  # checkpoints saved from a wrapper class


class ExportError(ValueError):
    """The checkpoint is not one this exporter can write (not BERT-shaped, missing files)."""


def load_weights(directory: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by BertModel name (a wrapper's prefix removed)."""
    path = directory / "model.safetensors"
    if not path.is_file():
        raise ExportError(
            f"{directory} has no model.safetensors (and no model.onnx): save the model with "
            "safetensors, or export it to ONNX"
        )
    weights = load_file(str(path))
    out = {}
    for name, value in weights.items():
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        out[name] = value.astype(np.float32) if value.dtype != np.int64 else value
    if "embeddings.word_embeddings.weight" not in out:
        raise ExportError(f"{path} does not hold a BERT encoder (no embeddings.word_embeddings)")
    return out


class _Graph:
    """Accumulates nodes and initializers, naming intermediate values uniquely."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(value, name)
        return name

    def weight(self, name: str, transpose: bool = False) -> str:
        value = self.weights[name]
        key = name + (".T" if transpose else "")
        return self.const(key, np.ascontiguousarray(value.T) if transpose else value)

    def op(self, kind: str, *inputs: str, **attrs: object) -> str:
        self._count += 1
        out = f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def linear(self, x: str, name: str) -> str:
        """x @ W.T + b for the checkpoint's dense layer ``name``."""
        y = self.op("MatMul", x, self.weight(name + ".weight", transpose=True))
        return self.op("Add", y, self.weight(name + ".bias"))

    def layer_norm(self, x: str, name: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            x,
            self.weight(name + ".weight"),
            self.weight(name + ".bias"),
            axis=-1,
            epsilon=eps,
        )

    def gelu(self, x: str) -> str:
        """0.5 x (1 + erf(x / sqrt 2)), the exact GELU BERT uses."""
        scaled = self.op("Div", x, self.const("sqrt2", np.array(math.sqrt(2.0), np.float32)))
        erf = self.op("Erf", scaled)
        one = self.op("Add", erf, self.const("one", np.array(1.0, np.float32)))
        half = self.op("Mul", x, self.const("half", np.array(0.5, np.float32)))
        return self.op("Mul", half, one)


def bert_graph(directory: Path, fused: bool = True) -> onnx.ModelProto:
    """The ONNX model of the BERT-family checkpoint in ``directory``; ``fused`` uses ONNX
    Runtime's fused attention operator, else only standard ONNX operators (any runtime)."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{directory} has no config.json")
    config = json.loads(config_path.read_text())
    kind = config.get("model_type", "bert")
    if kind not in ("bert",):
        raise ExportError(
            f"model_type {kind!r} is not BERT-shaped; give a directory holding model.onnx"
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ExportError("only absolute position embeddings are supported")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ExportError(f"hidden_act {config.get('hidden_act')!r} is not supported (gelu)")
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    g = _Graph(load_weights(directory))

    # embeddings: word + position (0..L-1) + token type 0, then LayerNorm
    words = g.op("Gather", g.weight("embeddings.word_embeddings.weight"), "input_ids")
    shape = g.op("Shape", "input_ids")
    length = g.op("Gather", shape, g.const("one_i", np.array(1, np.int64)), axis=0)
    positions = g.op(
        "Range",
        g.const("zero_i", np.array(0, np.int64)),
        length,
        g.const("one_i", np.array(1, np.int64)),
    )
    pos = g.op("Gather", g.weight("embeddings.position_embeddings.weight"), positions)
    token_type = g.const(
        "token_type_0", g.weights["embeddings.token_type_embeddings.weight"][0].copy()
    )
    x = g.op("Add", g.op("Add", words, pos), token_type)
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)

    if fused:
        # ONNX Runtime's fused self-attention (com.microsoft.Attention, CPU and CUDA): the
        # query, key and value projections as one matrix, the 0/1 mask as given
        mask = g.op("Cast", "attention_mask", to=TensorProto.INT32)
    else:
        # standard ops: the mask as an additive bias (B, 1, 1, L), 0 where attended
        blocked = g.op(
            "Sub",
            g.const("one", np.array(1.0, np.float32)),
            g.op("Cast", "attention_mask", to=TensorProto.FLOAT),
        )
        neg = g.const("neg", np.array(np.finfo(np.float32).min, np.float32))
        bias = g.op(
            "Unsqueeze", g.op("Mul", blocked, neg), g.const("axes", np.array([1, 2], np.int64))
        )
        split = g.const("split_heads", np.array([0, 0, heads, hidden // heads], np.int64))
        merge = g.const("merge_heads", np.array([0, 0, hidden], np.int64))
        scale = g.const("scale", np.array(1.0 / math.sqrt(hidden // heads), np.float32))
    for i in range(layers):
        p = f"encoder.layer.{i}."
        parts = [p + f"attention.self.{part}" for part in ("query", "key", "value")]
        if fused:
            qkv = np.concatenate([g.weights[n + ".weight"].T for n in parts], axis=1)
            context = g.op(
                "Attention",
                x,
                g.const(p + "qkv.weight", np.ascontiguousarray(qkv)),
                g.const(p + "qkv.bias", np.concatenate([g.weights[n + ".bias"] for n in parts])),
                mask,
                domain="com.microsoft",
                num_heads=heads,
            )
        else:
            q, k, v = (g.op("Reshape", g.linear(x, n), split) for n in parts)
            q = g.op("Transpose", q, perm=[0, 2, 1, 3])
            k = g.op("Transpose", k, perm=[0, 2, 3, 1])
            v = g.op("Transpose", v, perm=[0, 2, 1, 3])
            scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), bias)
            probs = g.op("Softmax", scores, axis=-1)
            context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
            context = g.op("Reshape", context, merge)
        attended = g.linear(context, p + "attention.output.dense")
        x = g.layer_norm(g.op("Add", attended, x), p + "attention.output.LayerNorm", eps)
        inner = g.gelu(g.linear(x, p + "intermediate.dense"))
        out = g.linear(inner, p + "output.dense")
        x = g.layer_norm(g.op("Add", out, x), p + "output.LayerNorm", eps)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    outputs = [
        helper.make_tensor_value_info(
            "last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden]
        )
    ]
    if "pooler.dense.weight" in g.weights:
        cls = g.op("Gather", x, g.const("zero_i", np.array(0, np.int64)), axis=1)
        pooled = g.op("Tanh", g.linear(cls, "pooler.dense"))
        g.nodes.append(helper.make_node("Identity", [pooled], ["pooler_output"]))
        outputs.append(
            helper.make_tensor_value_info("pooler_output", TensorProto.FLOAT, ["batch", hidden])
        )
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
        for name in ("input_ids", "attention_mask")
    ]
    graph = helper.make_graph(
        g.nodes, "bert_encoder", inputs, outputs, list(g.initializers.values())
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="toolfleet",
    )
    model.ir_version = 8
    return model
