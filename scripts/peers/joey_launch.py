#!/usr/bin/env python3
"""`python -m joeynmt ...` with two fixes, so that Joey NMT 2.3.0 runs our `matched`
config on the torch of requirements-joey.txt (2.13).

    python scripts/peers/joey_launch.py train CONFIG [--skip-test]     # Joey's own CLI

Joey's recurrent encoder fails when it is not bidirectional, as it has since Joey's first
commit (2018) and still does on its main branch: RecurrentEncoder.forward always takes
the backward direction's final state (`hidden_layerwise[-1:, 1]`: IndexError with one
direction). `bidirectional: False` is a documented option; the fix below returns the top
layer's final state, which is what the decoder's `init_hidden` reads. Bidirectional
encoders run Joey's own code untouched.

Joey NMT 2.3.0 (2024-01) also predates torch 2.7, which removed ReduceLROnPlateau's
`verbose` argument (a no-op since 2.2) that Joey's "plateau" scheduling passes: the class
is wrapped to drop it, and nothing else about the scheduler changes. (The alternative,
torch <= 2.6, is a CUDA build of several GB from PyPI.) torch.load's weights_only default
(torch 2.6) needs nothing: Joey's checkpoints hold only tensors and plain Python values.
"""

from __future__ import annotations

import inspect
import runpy
import sys


def patch_torch() -> None:
    """Make torch accept what Joey 2.3.0 passes it (before Joey imports the names)."""
    from torch.optim import lr_scheduler

    original = lr_scheduler.ReduceLROnPlateau
    if "verbose" in inspect.signature(original.__init__).parameters:
        return  # torch <= 2.6: nothing to do

    class ReduceLROnPlateau(original):
        def __init__(self, *args, verbose: bool = False, **kwargs) -> None:
            super().__init__(*args, **kwargs)

    lr_scheduler.ReduceLROnPlateau = ReduceLROnPlateau


def patch_joey() -> None:
    """Let Joey's recurrent encoder run with one direction."""
    from joeynmt.encoders import RecurrentEncoder
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    bidirectional_forward = RecurrentEncoder.forward
    if getattr(bidirectional_forward, "patched", False):
        return

    def forward(self, src_embed, src_length, mask, **kwargs):
        if self.rnn.bidirectional:
            return bidirectional_forward(self, src_embed, src_length, mask, **kwargs)
        total_length = src_embed.size(1)
        packed = pack_padded_sequence(
            self.emb_dropout(src_embed), src_length.cpu(), batch_first=True
        )
        output, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]  # (layers, batch, hidden)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=total_length)
        return output, hidden[-1]  # (batch, length, hidden), (batch, hidden)

    forward.patched = True
    RecurrentEncoder.forward = forward


def patch() -> None:
    patch_torch()
    patch_joey()


if __name__ == "__main__":
    patch()
    sys.argv[0] = "joeynmt"
    runpy.run_module("joeynmt", run_name="__main__", alter_sys=True)
