"""Greedy search and the source-side rules it runs under, written once in `keras.ops`.

Two callers take this one path: `Decoder` (decode.py: what `translate` runs)
compiles it, and the SavedModel export (export.py) traces it into its serving graph. So
each rule exists once: an over-long source is cut to the model's `max_source_length`
pieces, a sentence may run
`length_ratio * source_length + length_offset` steps, and it ends at its first eos.

The search is a compiled `while_loop` over `Seq2Seq.decode_step`. Where shapes are
dynamic (TensorFlow) a finished sentence leaves the batch, and the loop ends when none is
left; elsewhere every row steps until all are finished.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras import ops

from .. import backend
from ..config import DecodeConfig
from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from ..model.seq2seq import Seq2Seq


def prepare_sources(source_ids, decode_config: DecodeConfig, max_source_length: int | None = None):
    """What the encoder and the search need from source ids (batch, length), right-padded
    with PAD_ID, in natural order: the encoder's input, each sentence cut to its first
    `max_source_length` pieces (None: no limit; `Seq2Seq.encode` reverses it if the model
    reads backwards), and each sentence's step limit (batch,), 0 for an empty one."""
    source = source_ids[:, :max_source_length]  # (batch, min(length, max_source_length))
    lengths = ops.sum(ops.cast(ops.not_equal(source, PAD_ID), "int32"), axis=1)  # (batch,)
    scaled = ops.cast(decode_config.length_ratio * ops.cast(lengths, "float32"), "int32")
    limits = ops.where(lengths > 0, scaled + decode_config.length_offset, 0)  # (batch,)
    return source, ops.cast(limits, "int32")


def trim_at_eos(ids):
    """ids (batch, steps) with PAD_ID from each sentence's end on: its first eos, or its
    first pad (the search pads a sentence past its limit; a model may also pick pad)."""
    ends = ops.logical_or(ops.equal(ids, EOS_ID), ops.equal(ids, PAD_ID))  # (batch, steps)
    ended = ops.cumsum(ops.cast(ends, "int32"), axis=1) > 0
    return ops.where(ended, ops.full_like(ids, PAD_ID), ids)


def greedy_search(
    model: Seq2Seq,
    encoded: dict,
    limits,
    max_steps: int,
    compact: bool | None = None,
    input_table=None,
    alignments: bool = False,
):
    """Token ids (batch, max_steps) from the encoded source (`Seq2Seq.encode`): each
    sentence's pieces and eos, PAD after its eos or its limit (`limits`, (batch,)).
    With `alignments` (attention models), also each step's attention weights (batch,
    max_steps, source_len), zero after the sentence's end.

    With `compact` (the default where shapes may change inside a compiled loop, i.e. on
    TensorFlow) a sentence leaves the batch as soon as it is finished, so every step
    costs only the sentences still going. Otherwise all rows step until all are finished.
    `input_table` (`Seq2Seq.input_table()`, optional) saves each step's input matmul.
    """
    compact = backend.dynamic_shapes() if compact is None else compact
    if alignments and model.attention is None:
        raise ValueError("alignments need a model with attention")
    search = _compacting_search if compact else _masked_search
    ids, weights = search(
        model,
        encoded["states"],
        model.decoder_constants(encoded),
        ops.convert_to_tensor(limits, "int32"),
        max_steps,
        input_table,
        encoded["memory"] if alignments else None,
    )
    return (ids, weights) if alignments else ids


def _step(model: Seq2Seq, token, states, constants, input_table, aligning: bool):
    """One step, with the attention weights (batch, source_len) when `aligning`, else None."""
    if aligning:
        return model.decode_step(token, states, constants, input_table, return_attention=True)
    return (*model.decode_step(token, states, constants, input_table), None)


def _alignment_start(memory, batch_size, max_steps: int):
    """The weights' output: (batch, max_steps, source_len), or a (batch, 0, 0) stand-in."""
    if memory is None:
        return ops.zeros((batch_size, 0, 0), dtype="float32")
    return ops.zeros((batch_size, max_steps, ops.shape(memory)[1]), dtype="float32")


def _masked_search(model: Seq2Seq, states, constants, limits, max_steps: int, input_table, memory):
    batch_size = ops.shape(limits)[0]
    positions = ops.expand_dims(ops.arange(max_steps, dtype="int32"), 0)  # (1, max_steps)

    def keep_going(step, token, states, output, weights, finished):
        return ops.logical_not(ops.all(finished))

    def step_once(step, token, states, output, weights, finished):
        logits, states, attention = _step(
            model, token, states, constants, input_table, memory is not None
        )  # logits: (batch, vocab)
        token = ops.where(finished, PAD_ID, ops.cast(ops.argmax(logits, axis=-1), "int32"))
        at_step = positions == step  # (1, max_steps)
        output = ops.where(at_step, ops.expand_dims(token, 1), output)
        if attention is not None:
            attention = ops.where(
                ops.expand_dims(finished, 1), 0.0, ops.cast(attention, "float32")
            )  # (batch, source_len)
            weights = ops.where(
                ops.expand_dims(at_step, -1), ops.expand_dims(attention, 1), weights
            )
        finished = finished | ops.equal(token, EOS_ID) | (step + 1 >= limits)
        return step + 1, token, states, output, weights, finished

    start = (
        ops.convert_to_tensor(0, "int32"),
        ops.full((batch_size,), BOS_ID, dtype="int32"),
        states,
        ops.zeros((batch_size, max_steps), dtype="int32"),  # (batch, max_steps)
        _alignment_start(memory, batch_size, max_steps),
        ops.less_equal(limits, 0),
    )
    end = ops.while_loop(keep_going, step_once, start, maximum_iterations=max_steps)
    return end[3], end[4]


def _compacting_search(
    model: Seq2Seq, states, constants, limits, max_steps: int, input_table, memory
):
    # The loop carries, for the unfinished sentences only: their rows in the output, the
    # last token, the limits, the states of every layer and the per-sentence constants.
    layers, names = len(states), sorted(constants)
    batch_size = ops.shape(limits)[0]

    def keep_going(step, output, weights, carry):
        return ops.shape(carry[0])[0] > 0

    def step_once(step, output, weights, carry):
        token, limits, rows, states, constants = _unpack(carry, layers, names)
        logits, states, attention = _step(
            model, token, states, constants, input_table, memory is not None
        )  # logits: (going, vocab)
        token = ops.cast(ops.argmax(logits, axis=-1), "int32")
        where = ops.stack([rows, ops.full_like(rows, step)], axis=1)  # (going, 2)
        output = ops.scatter_update(output, where, token)
        if attention is not None:
            weights = ops.scatter_update(weights, where, ops.cast(attention, "float32"))
        going = ops.not_equal(token, EOS_ID) & ops.less(step + 1, limits)
        carry = _pack(token, limits, rows, states, constants)
        carry = ops.cond(ops.all(going), lambda: carry, lambda: _keep(carry, going))
        return step + 1, output, weights, carry

    start = _pack(
        ops.full((batch_size,), BOS_ID, dtype="int32"),
        limits,
        ops.arange(batch_size, dtype="int32"),
        states,
        constants,
    )
    start = _keep(start, ops.greater(limits, 0))
    output = ops.zeros((batch_size, max_steps), dtype="int32")  # (batch, max_steps)
    end = backend.shrinking_while_loop(
        keep_going,
        step_once,
        (
            ops.convert_to_tensor(0, "int32"),
            output,
            _alignment_start(memory, batch_size, max_steps),
            start,
        ),
        maximum_iterations=max_steps,
    )
    return end[1], end[2]


def _pack(token, limits, rows, states, constants: dict) -> list:
    """The compacting search's carry as one flat list of (going, ...) arrays."""
    return [
        token,
        limits,
        rows,
        *(x for state in states for x in state),
        *(constants[name] for name in sorted(constants)),
    ]


def _unpack(carry: list, layers: int, names: list[str]):
    token, limits, rows = carry[:3]
    states = [list(carry[3 + 2 * i : 5 + 2 * i]) for i in range(layers)]
    constants = dict(zip(names, carry[3 + 2 * layers :]))
    return token, limits, rows, states, constants


def _keep(carry: list, going):
    """The carry's rows where `going` is true."""
    rows = ops.nonzero(going)[0]
    return [ops.take(x, rows, axis=0) for x in carry]
