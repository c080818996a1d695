"""What a model is made of: its config and parameters by component, sharing made visible."""

from __future__ import annotations

from typing import Any

from ..config import Config
from .parameters import expected_parameter_count
from .seq2seq import Seq2Seq, shape_arguments

BOTH = "encoder + decoder (one set of weights)"


def parameter_report(model: Seq2Seq, config: Config, document: dict[str, Any]) -> dict[str, Any]:
    """Parameters per component, each shared layer once, checked against the formula;
    `document`: the model directory's config.json, whose settings are shown as saved."""
    vocab = document["vocab"]
    shape = shape_arguments(config.model, vocab["source_vocab_size"], vocab["target_vocab_size"])
    total = model.count_params()
    formula = expected_parameter_count(**shape)
    notes = []
    if config.model.share_lstm:
        unshared = expected_parameter_count(**{**shape, "share_lstm": False})
        notes.append(
            f"Each LSTM layer's weights exist once and serve encoder and decoder; "
            f"separate LSTMs would need {unshared:,} parameters "
            f"({unshared - total:,} more)."
        )
    if config.model.tie_output:
        notes.append("The output projection reuses the target embedding table.")
    return {
        "config": {
            key: document[key]
            for key in ("model", "training", "vocab", "format_version", "package_version")
        },
        "components": _components(model),
        "total": total,
        "formula": formula,
        "notes": notes,
    }


def _row(layer, used_by: str) -> dict[str, Any]:
    return {"name": layer.name, "parameters": layer.count_params(), "used_by": used_by}


def _components(model: Seq2Seq) -> list[dict[str, Any]]:
    """One row per layer that holds weights, a shared layer once, with who uses it."""
    components = []
    if model.share_embeddings:
        components.append(_row(model.source_embedding, BOTH))
    else:
        components += [
            _row(model.source_embedding, "encoder"),
            _row(model.target_embedding, "decoder"),
        ]
    for encoder_lstm, decoder_lstm in zip(model.encoder_lstms, model.decoder_lstms, strict=True):
        if encoder_lstm is decoder_lstm:
            components.append(_row(encoder_lstm, BOTH))
        else:
            components += [_row(encoder_lstm, "encoder"), _row(decoder_lstm, "decoder")]
    if model.attention is not None:
        for layer, job in (
            (model.attention.score_kernel, "scores the encoder's outputs"),
            (model.attention.combine, "combines context and state"),
        ):
            if layer is not None:
                components.append(
                    {
                        **_row(layer, f"decoder (attention: {job})"),
                        "name": f"attention/{layer.name}",
                    }
                )
    if model.roles is not None:
        components.append(_row(model.roles, f"encoder + decoder (one {model.roles.kind} per role)"))
    for layer in (model.projection, getattr(model, "output_bridge", None)):
        if layer is not None:
            components.append(_row(layer, "decoder (output)"))
    return components
