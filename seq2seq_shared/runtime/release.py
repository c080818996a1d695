"""A release: a translate-only model directory, small, that runs without TensorFlow.

`release` writes, from a trained model directory: config.json (the settings, with the
release's precision), the SentencePiece model(s), `weights.npz` (the network's arrays by
name, no optimizer state, no checkpoints) and checksums.json over config.json and the
weights. Precisions: float32; float16 (every array halved); int8 (each matrix quantized
symmetrically per output channel, its scales kept in float32; biases and the role signal
stay float32). Arrays are float32 again when a release is loaded: NumPy has no fast int8
matrix product, so the int8 release is small on disk and in transfer, not faster.

`--runtime onnx` adds the network as two ONNX graphs (`onnx_graphs.py`) that read the
same weights.npz: ONNX Runtime runs them, int8 products included, so its int8 release is
as small and faster.
"""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RELEASE_PRECISIONS as PRECISIONS
from ..data.writer import atomic_directory
from ..model_dir import RELEASE_GRAPHS, RELEASE_WEIGHTS, SHORTLIST, ModelDir, read_release_file
from ..model_dir import RELEASE_SCALE as SCALE


def network_arrays(model) -> dict[str, np.ndarray]:
    """The Keras model's weights by the names `runtime/network.py` reads."""
    arrays = {"embedding/source": model.source_embedding.embeddings}
    if not model.share_embeddings:
        arrays["embedding/target"] = model.target_embedding.embeddings
    sides = [("encoder", model.encoder_lstms)]
    if not model.share_lstm:
        sides.append(("decoder", model.decoder_lstms))
    for side, lstms in sides:
        for layer, lstm in enumerate(lstms):
            for name in ("kernel", "recurrent_kernel", "bias"):
                arrays[f"{side}/{layer}/{name}"] = getattr(lstm.cell, name)
    if model.attention is not None:
        arrays["attention/combine"] = model.attention.combine.kernel
        if model.attention.score_kernel is not None:
            arrays["attention/score"] = model.attention.score_kernel.kernel
    if model.roles is not None and model.roles.kind == "bias":
        for layer, bias in enumerate(model.roles.gate_biases):
            arrays[f"roles/gate_bias/{layer}"] = bias
    elif model.roles is not None:
        arrays["roles/vectors"] = model.roles.vectors
    if model.projection is not None:
        arrays["projection/kernel"] = model.projection.kernel
        arrays["projection/bias"] = model.projection.bias
    elif model.output_bridge is not None:
        arrays["output_bridge/kernel"] = model.output_bridge.kernel
    return {name: np.asarray(value, np.float32) for name, value in arrays.items()}


def quantized(arrays: dict[str, np.ndarray], precision: str) -> dict[str, np.ndarray]:
    """The arrays as stored at `precision`."""
    if precision == "float32":
        return dict(arrays)
    if precision == "float16":
        return {name: value.astype(np.float16) for name, value in arrays.items()}
    stored = {}
    for name, value in arrays.items():
        if value.ndim != 2 or name.startswith("roles/"):  # biases, the role signal: exact
            stored[name] = value  # (releases before kept roles/ int8: they still load)
            continue
        axis = 1 if name.startswith("embedding/") else 0  # the output channel's other axis
        scale = np.abs(value).max(axis=axis, keepdims=True) / 127.0
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        stored[name] = np.clip(np.rint(value / scale), -127, 127).astype(np.int8)
        stored[name + SCALE] = scale
    return stored


def dequantized(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float32 arrays of a release, whatever its precision."""
    arrays = {}
    for name, value in stored.items():
        if name.endswith(SCALE):
            continue
        scale = stored.get(name + SCALE)
        arrays[name] = (
            value.astype(np.float32) if scale is None else value.astype(np.float32) * scale
        )
    return arrays


def _network_files(arrays: dict, config, precision: str, runtime: str) -> tuple[dict, dict]:
    """{file name: bytes} holding the network, for `runtime` (weights.npz, and for ONNX
    the two graphs that read it), and what config.json's "release" says of them."""
    buffer = io.BytesIO()
    stored: dict[str, Any] = quantized(arrays, precision)
    np.savez(buffer, **stored)
    files = {RELEASE_WEIGHTS: buffer.getvalue()}
    release: dict[str, Any] = {"precision": precision, "runtime": runtime}
    if runtime == "onnx":
        from .onnx_graphs import onnx_graphs

        graphs, names = onnx_graphs(stored, config)
        files.update({RELEASE_GRAPHS[name]: graph for name, graph in graphs.items()})
        release["shared_weights"] = names  # what each graph reads of weights.npz
    return files, release


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def release_stored(directory: ModelDir) -> dict[str, np.ndarray]:
    """A release's arrays as stored (int8 ones with their scales), its weights file
    checked against checksums.json first."""
    path, data = directory.path / RELEASE_WEIGHTS, read_release_file(directory, RELEASE_WEIGHTS)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (ValueError, OSError, KeyError) as error:  # (matched its checksum: a bad release)
        raise ValueError(f"{path}: cannot be read ({error}); release again") from None


def release_arrays(directory: ModelDir) -> dict[str, np.ndarray]:
    """A release's float32 arrays by name (`release_stored`, dequantized)."""
    return dequantized(release_stored(directory))


def write_release(
    model_dir: Path | str, output: Path | str, precision: str, runtime: str = "numpy"
) -> dict[str, Any]:
    """Write the release of `model_dir` to `output` (a new directory, made whole or not
    at all) for `runtime` (numpy: weights.npz; onnx: the ONNX graphs too); returns its files'
    sizes."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if runtime == "onnx" and precision == "float16":
        raise ValueError("an ONNX release is float32 or int8 (ONNX Runtime has no fast float16 "
                         "on a CPU); use --precision int8 or float32")  # fmt: skip
    source = ModelDir(model_dir)
    model, tokenizer, config = source.load_model()  # (a release of a release: refused there)
    arrays = network_arrays(model)
    files, release = _network_files(arrays, config.model, precision, runtime)
    if (source.path / SHORTLIST).is_file():  # (built for the model: it goes with it)
        files[SHORTLIST] = read_release_file(source, SHORTLIST)
    release["parameters"] = int(sum(array.size for array in arrays.values()))

    def fill(folder: Path) -> None:
        made = ModelDir(folder)
        models = made.save_tokenizer(tokenizer)
        for name, data in files.items():
            made.checksums.write(name, partial(_write_bytes, data=data))
        made.save_config(config, *source.vocab_sizes(), models, release=release)

    atomic_directory(Path(output), fill)
    sizes = {path.name: path.stat().st_size for path in sorted(Path(output).iterdir())}
    return {
        "output": str(output),
        "precision": precision,
        "bytes": sum(sizes.values()),
        "files": sizes,
    }
