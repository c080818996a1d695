"""The parameter count by formula, component by component: what `info` checks the built
model against, and what the tests assert (sharing counts each LSTM layer once)."""

from __future__ import annotations

from .attention import attention_parameter_count
from .roles import role_parameter_count


def lstm_parameter_count(input_size: int, hidden_size: int) -> int:
    """Keras LSTM: input kernel, recurrent kernel and one bias, for 4 gates."""
    return 4 * (input_size * hidden_size + hidden_size * hidden_size + hidden_size)


def expected_parameter_count(
    *,
    source_vocab_size: int,
    target_vocab_size: int,
    embedding_dim: int,
    hidden_size: int,
    num_layers: int,
    share_lstm: bool,
    share_embeddings: bool,
    tie_output: bool,
    feed_context: bool,
    attention: str,
    role_signal: str,
) -> int:
    """The parameter count by formula (`shape_arguments` gives a config's); with sharing
    each LSTM layer is counted once."""
    embeddings = source_vocab_size * embedding_dim
    if not share_embeddings:
        embeddings += target_vocab_size * embedding_dim
    first_input = embedding_dim + (hidden_size if feed_context else 0)
    stack = sum(
        lstm_parameter_count(first_input if i == 0 else hidden_size, hidden_size)
        for i in range(num_layers)
    )
    lstms = stack if share_lstm else 2 * stack
    if tie_output:  # only the bridge, if any: the scores reuse the embedding table
        output = hidden_size * embedding_dim if hidden_size != embedding_dim else 0
    else:
        output = hidden_size * target_vocab_size + target_vocab_size
    extras = attention_parameter_count(attention, hidden_size) + role_parameter_count(
        role_signal, num_layers, embedding_dim, hidden_size
    )
    return embeddings + lstms + output + extras
