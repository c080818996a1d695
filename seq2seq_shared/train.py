"""A training run: data, SentencePiece, model, teacher-forced training, validation, saving."""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .data import ParallelBatches, read_parallel
from .model_dir import ModelDir
from .tokenizer import Tokenizer, train_sentencepiece

logger = logging.getLogger(__name__)

SAMPLE_TRANSLATIONS = 3


def train(source_path: Path, target_path: Path, model_dir: Path | str, config: Config,
          valid_source_path: Path | None = None, valid_target_path: Path | None = None,
          overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a model into `model_dir`; returns the last epoch's metrics."""
    directory = ModelDir(model_dir)
    if not directory.is_empty() and not overwrite:
        raise ValueError(f"{directory}: model directory is not empty; pass --overwrite to replace "
                         f"what is there, or choose a new --model-dir")
    directory.check_writable()
    sources, targets = read_parallel(source_path, target_path)
    valid = (read_parallel(valid_source_path, valid_target_path)
             if valid_source_path is not None and valid_target_path is not None else None)
    with _log_to(directory.log_path):
        return _run(directory, config, sources, targets, valid, progress)


def _run(directory: ModelDir, config: Config, sources: list[str], targets: list[str],
         valid: tuple[list[str], list[str]] | None, progress: bool) -> dict[str, Any]:
    import keras

    from . import backend
    from .decode import Translator
    from .evaluate import teacher_forced_nll

    model_config, training = config.model, config.training
    keras.utils.set_random_seed(training.seed)
    logger.info("training on %d pairs with %s on %s (Keras backend %s)", len(sources),
                config.to_dict(), backend.accelerator(), backend.name())

    tokenizer = _train_tokenizer(sources, targets, config)
    sentencepiece_models = directory.save_tokenizer(
        tokenizer.source.serialized_model_proto(),
        None if tokenizer.joint else tokenizer.target.serialized_model_proto())
    directory.save_config(config, tokenizer.source_vocab_size, tokenizer.target_vocab_size,
                          sentencepiece_models)

    batches = _batches(tokenizer, sources, targets, config, shuffle=True)
    valid_batches = _batches(tokenizer, *valid, config, shuffle=False) if valid else None
    logger.info("batches: %.1f%% of padded target slots hold real tokens",
                100 * batches.padding_efficiency)
    model = directory.build_model(config)
    model.compile(optimizer=keras.optimizers.Adam(
        learning_rate=training.learning_rate, global_clipnorm=training.clip_norm or None))
    logger.info("model: %d parameters, %d batches per epoch", model.count_params(), len(batches))
    translator = Translator(model, tokenizer, model_config)

    history: list[dict[str, Any]] = []
    step = 0
    for epoch in range(1, training.epochs + 1):
        batches.set_epoch(epoch)
        started = time.perf_counter()
        loss_sum = nll_sum = 0.0
        tokens = 0
        bar = _progress_bar(len(batches), f"epoch {epoch}/{training.epochs}", progress)
        for index in range(len(batches)):
            batch = batches.batch(index)
            logs = model.train_on_batch(
                {"source": batch.source, "target_input": batch.target_input},
                batch.target_output, return_dict=True)
            step += 1
            if not math.isfinite(float(logs["loss"])):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch}, step {step}: the loss is "
                    f"{float(logs['loss'])}. The last completed epoch is saved in {directory}; "
                    f"retry with a lower --learning-rate or a smaller --clip-norm")
            count = batch.num_target_tokens
            loss_sum += float(logs["loss"]) * count
            nll_sum += float(logs["nll"]) * count
            tokens += count
            bar.set_postfix(loss=f"{loss_sum / tokens:.3f}",
                            tok_s=f"{tokens / (time.perf_counter() - started):.0f}")
            bar.update()
        bar.close()
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": round(loss_sum / tokens, 4),
                               "train_ppl": round(math.exp(nll_sum / tokens), 3),
                               "target_tokens_per_second": round(tokens / seconds),
                               "seconds": round(seconds, 1)}
        if valid_batches is not None:
            valid_nll = teacher_forced_nll(model, valid_batches)
            row.update(valid_loss=round(valid_nll, 4), valid_ppl=round(math.exp(valid_nll), 3))
        history.append(row)
        logger.info("epoch %d: %s", epoch, ", ".join(f"{k}={v}" for k, v in row.items()))
        if valid:
            _log_samples(translator, *valid)
        directory.save_weights(model)
        directory.save_state({"epoch": epoch, "step": step, "finished": epoch == training.epochs,
                              "history": history})
        directory.save_metrics(history)
    logger.info("saved model to %s", directory)
    return history[-1]


def _train_tokenizer(sources: list[str], targets: list[str], config: Config) -> Tokenizer:
    model_config, training = config.model, config.training
    options = dict(vocab_size=model_config.vocab_size, model_type=training.sentencepiece_model_type,
                   sample_lines=training.sentencepiece_sample_lines, seed=training.seed)
    if model_config.joint_vocab:
        tokenizer = Tokenizer(train_sentencepiece(sources + targets, **options))
    else:
        tokenizer = Tokenizer(train_sentencepiece(sources, **options),
                              train_sentencepiece(targets, **options))
    logger.info("SentencePiece: %d source / %d target pieces (%s vocabulary)",
                tokenizer.source_vocab_size, tokenizer.target_vocab_size,
                "joint" if tokenizer.joint else "separate")
    return tokenizer


def _batches(tokenizer: Tokenizer, sources: list[str], targets: list[str], config: Config,
             shuffle: bool) -> ParallelBatches:
    from . import backend

    source_ids, target_ids = tokenizer.encode_source(sources), tokenizer.encode_target(targets)
    max_source, max_target = config.model.max_source_length, config.training.max_target_length
    keep = [i for i, (s, t) in enumerate(zip(source_ids, target_ids))
            if len(s) <= max_source and len(t) < max_target]
    if len(keep) < len(source_ids):
        logger.warning("dropped %d pair(s) longer than %d source / %d target pieces",
                       len(source_ids) - len(keep), max_source, max_target)
    if not keep:
        raise ValueError("every pair is longer than the length limits; raise "
                         "--max-source-length / --max-target-length")
    return ParallelBatches([source_ids[i] for i in keep], [target_ids[i] for i in keep],
                           batch_tokens=config.training.batch_tokens,
                           reverse_source=config.model.reverse_source,
                           seed=config.training.seed, shuffle=shuffle,
                           multiple=backend.shape_multiple())


def _log_samples(translator, sources: list[str], targets: list[str]) -> None:
    picks = np.linspace(0, len(sources) - 1, SAMPLE_TRANSLATIONS).astype(int).tolist()
    hypotheses = translator.translate([sources[i] for i in picks])
    for i, hypothesis in zip(picks, hypotheses):
        logger.info("sample: %s\n    reference:  %s\n    hypothesis: %s",
                    sources[i], targets[i], hypothesis)


def _progress_bar(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="batch", disable=not enabled, leave=False,
                dynamic_ncols=True, mininterval=0.5)


@contextmanager
def _log_to(path: Path):
    """Copy this package's log records into the model directory's train.log."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("seq2seq_shared")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()
