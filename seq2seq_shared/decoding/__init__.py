"""Decoding: greedy and beam search, the batched Decoder, the Translator, evaluation, export."""
