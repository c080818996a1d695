"""What the server translates with: a loaded model and a `Translator` per search setting."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DecodeConfig, ServeLimits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """A request's decoding options. Lines are batched only with lines of equal options."""

    beam_size: int = DecodeConfig.beam_size
    length_penalty: float = DecodeConfig.length_penalty
    n_best: int = DecodeConfig.n_best
    scores: bool = False
    alignments: bool = False


class Engine:
    """The model, loaded once; `translate` runs on one thread at a time (the batcher's)."""

    TRANSLATORS = 8  # search settings kept compiled, the least recently used dropped

    def __init__(
        self,
        model_dir: Path | str,
        batch_size: int = DecodeConfig.batch_size,
        max_beam_size: int = ServeLimits.max_beam_size,
        shortlist: bool = False,
    ):
        from ..runtime import LoadedRelease, is_release

        self.batch_size, self.max_beam_size = batch_size, max_beam_size
        self.shortlist = shortlist  # (a release's: checked when its translator is made)
        self.release = LoadedRelease(model_dir) if is_release(model_dir) else None
        if shortlist and self.release is None:
            raise ValueError(f"--shortlist runs on a release; make one: seq2seq-shared release "
                             f"--model-dir {model_dir} --out RELEASE")  # fmt: skip
        self.model: Any = None
        if self.release is not None:  # NumPy, no TensorFlow
            self.model, self.tokenizer = self.release.network, self.release.tokenizer
            self.config, self.info = self.release.config, self.release.info()
        else:
            self._load_keras(model_dir)
        self.attention = self.model.attention is not None
        self._translators: dict[tuple, object] = {}

    def _load_keras(self, model_dir: Path | str) -> None:
        from ..model.report import parameter_report
        from ..model_dir import ModelDir

        directory = ModelDir(model_dir)
        self.model, self.tokenizer, self.config = directory.load_model()
        document = directory.read_config_document()
        self.info = parameter_report(self.model, self.config, document)  # as `info --json`

    def check(self, options: Options) -> None:
        """ValueError with a message for the client if these options cannot be served."""
        if options.beam_size > self.max_beam_size:
            raise ValueError(
                f"beam_size {options.beam_size} is over this server's limit "
                f"({self.max_beam_size}, --max-beam-size)"
            )
        if options.alignments and not self.attention:
            raise ValueError(
                "alignments: this model has no attention (trained with "
                "--attention none), so there are no alignments to return"
            )
        try:
            self._decode_config(options)  # its own checks (n_best <= beam_size, ...)
        except ValueError as error:  # (worded for the command line)
            raise ValueError(str(error).replace("--beam-size", "beam_size")) from None

    def _decode_config(self, options: Options) -> DecodeConfig:
        return DecodeConfig(
            batch_size=self.batch_size,
            beam_size=options.beam_size,
            length_penalty=options.length_penalty,
            n_best=options.n_best,
            shortlist=self.shortlist,
        )

    def translator(self, options: Options):
        from ..decoding.translator import Translator

        key = (options.beam_size, options.length_penalty, options.n_best)
        translator = self._translators.pop(key, None)  # (re-inserted: the newest)
        if translator is None and self.release is not None:
            translator = self.release.translator(self._decode_config(options))
        if translator is None:  # each compiles its search once: keep a few
            translator = Translator(
                self.model,
                self.tokenizer,
                self.config.model,
                self._decode_config(options),
                fixed_weights=True,
            )
            if len(self._translators) >= self.TRANSLATORS:
                self._translators.pop(next(iter(self._translators)))  # the least recent
        self._translators[key] = translator
        return translator

    def translate(self, lines: list[str], options: Options) -> list[dict]:
        """One JSON-ready result per line, in order: {"text"} ("truncated": true where the
        line was longer than the model reads), with `scores` its
        "log_prob" and "score", with n_best > 1 its "hypotheses", with `alignments` its
        "alignment" (as `translate --alignments` writes it)."""
        done = self.translator(options).translate_details(
            lines, scores=options.scores, alignments=options.alignments
        )
        results = []
        for translation in done:
            result: dict = {"text": translation.text}
            if translation.truncated:
                result["truncated"] = True  # only the first max_source_length pieces read
            if options.scores:
                best = translation.hypotheses[0]
                result.update(log_prob=best["log_prob"], score=best["score"])
            if options.n_best > 1:
                result["hypotheses"] = translation.hypotheses
            if options.alignments:
                result["alignment"] = translation.alignment
            results.append(result)
        return results

    def warm_up(self) -> float:
        """Compile greedy search before the port opens, so no client waits for it.
        Returns the seconds it took."""
        started = time.perf_counter()
        for lines in (["a"], ["a b c d e f g h"] * 3):
            self.translate(lines, Options())
        seconds = time.perf_counter() - started
        logger.info("compiled greedy search in %.1f s", seconds)
        return seconds

    def describe(self) -> dict:
        return {
            "attention": self.attention,
            "max_source_length": self.config.model.max_source_length,
            "batch_size": self.batch_size,
            "max_beam_size": self.max_beam_size,
            "defaults": dataclasses.asdict(Options()),
        }
