"""Speed of seq2seq-shared's own training step and greedy decoder, optionally beside PyTorch.

    python scripts/benchmark.py                                   # synthetic batches
    python scripts/benchmark.py --multi30k ../shared/data/multi30k --compare-torch
    python scripts/benchmark.py --scaling                          # batch x hidden table

Model: V=8000, E=256, H=512, ONE shared LSTM, untied projection, no dropout (the model of
`../shared/bench/torch_reference.py`). Each measurement runs in a fresh process (so peak
RSS is its own) and prints one JSON line; the summary is one JSON document on stdout.

- train: target tokens/s of `seq2seq_shared.training.steps.train_step` (the step `seq2seq-shared
  train` runs) over 16 batches, after one warm-up pass over them (compile time).
- decode: sentences/s of `Decoder` (what `translate` runs: sorted by length, a
  compiled search loop that stops when every sentence has ended) at batch 64 and 1024,
  every sentence limited to 30 steps, the reference's limit.
- data: `synthetic` (random ids, source and target lengths uniform in 8..20, batches of 64:
  the reference's own recipe) and, with --multi30k DIR, real batches: SentencePiece (joint,
  8k) trained on DIR/train.{de,en}, batches of 1,024 target slots from the product's
  length-bucketed batcher, decoding DIR/val.de. Padding efficiency of the batcher over
  all of DIR/train is reported too.
- --compare-torch: runs the reference (with --torch-python, a Python that has torch) on
  the very same batches, sources and weights, alternating with ours --rounds times, and
  reports the median of each and the ratio ours / torch. Both decode with the same random
  weights, so their outputs must agree; the share of identical sentences is reported.
- start-up: with --model-dir M, the wall time of `seq2seq-shared translate --model-dir M` on one
  line, as a whole process.
- --attention-cases: training tokens/s of the recipe's shape (tied output, fed context)
  without attention, with "dot" and with "general" attention, alternating, on the same
  batches; each beside "none" as a ratio.
- --search-model M --search-source F: sentences/s of `Translator` on the lines of F at
  batch 64, greedy beside beam 5 and beam 10 (a trained model: real sentence lengths and
  eos), alternating; each beside greedy as a ratio.
- --baseline DIR: this checkout beside another (DIR: a checkout of an earlier version,
  e.g. `git worktree add /tmp/before HEAD~3`), alternating on the same data: training
  tokens/s of the recipe's shape with dot attention, and greedy decoding sentences/s at
  batch 64; each as a ratio to the baseline ("nothing got slower", measured).
- --prepared DIR: the data path. Training tokens/s with every batch built as `train`
  builds it (`ParallelBatches` over a corpus `seq2seq-shared prepare` wrote to DIR),
  reading the prepared files beside the same arrays copied into memory, on the same
  batches, alternating; the ratio files / in memory, and the milliseconds a batch takes
  to build (no model) in each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seq2seq_shared.data.tokenizer import BOS_ID as BOS
from seq2seq_shared.data.tokenizer import EOS_ID as EOS
from seq2seq_shared.data.tokenizer import PAD_ID as PAD

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent.parent / "shared" / "bench" / "torch_reference.py"


# Data: written once to .npz files that both implementations read ----------------------


def synthetic_batches(vocab_size: int, batch_size: int, count: int = 16, seed: int = 0):
    """The reference's recipe: random ids, lengths uniform in [8, 20], right-padded."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        source_lengths = rng.integers(8, 21, size=batch_size)
        target_lengths = rng.integers(8, 21, size=batch_size)
        source = np.zeros((batch_size, source_lengths.max()), np.int32)
        target_output = np.zeros((batch_size, target_lengths.max()), np.int32)
        for i in range(batch_size):
            source[i, : source_lengths[i]] = rng.integers(4, vocab_size, source_lengths[i])
            target_output[i, : target_lengths[i]] = rng.integers(4, vocab_size, target_lengths[i])
            target_output[i, target_lengths[i] - 1] = EOS
        target_input = np.zeros_like(target_output)
        target_input[:, 0] = BOS
        target_input[:, 1:] = np.where(target_output[:, :-1] == EOS, PAD, target_output[:, :-1])
        batches.append((source, target_input, target_output))
    return batches


def save_batches(path: Path, batches) -> None:
    arrays = {}
    for i, (source, target_input, target_output) in enumerate(batches):
        arrays.update(
            {
                f"source_{i}": source,
                f"target_input_{i}": target_input,
                f"target_output_{i}": target_output,
            }
        )
    np.savez(path, **arrays)


def load_batches(path: Path):
    with np.load(path) as data:
        count = sum(1 for k in data.files if k.startswith("source_"))
        return [
            tuple(
                data[f"{name}_{i}"].astype(np.int32)
                for name in ("source", "target_input", "target_output")
            )
            for i in range(count)
        ]


def save_sources(path: Path, sources: list[list[int]]) -> None:
    array = np.zeros((len(sources), max(len(s) for s in sources)), np.int32)
    for row, ids in enumerate(sources):
        array[row, : len(ids)] = ids
    np.savez(path, source=array)


def multi30k_data(directory: Path, work: Path) -> dict:
    """Real batches and sources from Multi30k, through the product's tokenizer and batcher."""
    from seq2seq_shared.data.batches import ParallelBatches, read_lines
    from seq2seq_shared.data.tokenizer import Tokenizer, train_sentencepiece

    sources, targets = read_lines(directory / "train.de"), read_lines(directory / "train.en")
    tokenizer = Tokenizer(train_sentencepiece(sources + targets, vocab_size=8000, seed=1))
    source_ids, target_ids = tokenizer.encode_source(sources), tokenizer.encode_target(targets)
    # Batches hold sources in natural order, as the reference reads them (and the model
    # built here does not reverse them).
    batcher = ParallelBatches.from_lists(
        source_ids, target_ids, batch_tokens=1024, seed=1, multiple=1
    )
    batcher.set_epoch(1)
    picked = [batcher.batch(i) for i in range(16)]
    save_batches(
        work / "multi30k_batches.npz", [(b.source, b.target_input, b.target_output) for b in picked]
    )
    valid = tokenizer.encode_source(read_lines(directory / "val.de"))
    save_sources(work / "multi30k_sources.npz", [ids[:100] or [1] for ids in valid])
    source_slots = sum(
        len(rows) * max(len(source_ids[i]) for i in rows) for rows in batcher.batches
    )
    return {
        "sentences_per_batch": round(statistics.mean(len(b.source) for b in picked), 1),
        "padding_efficiency_target": round(batcher.padding_efficiency, 4),
        "padding_efficiency_source": round(sum(map(len, source_ids)) / source_slots, 4),
    }


# Our side: one measurement per process ------------------------------------------------


def build_model(
    vocab_size: int,
    embedding_dim: int,
    hidden_size: int,
    seed: int = 0,
    attention: str = "none",
    recipe_shape: bool = False,
):
    import keras

    from seq2seq_shared.model.seq2seq import Seq2Seq

    keras.utils.set_random_seed(seed)
    # The reference's model, whatever the product's defaults: one layer, untied, no context;
    # or the recipe's shape (tied output, fed context), for the attention cases.
    model = Seq2Seq(
        source_vocab_size=vocab_size,
        target_vocab_size=vocab_size,
        embedding_dim=embedding_dim,
        hidden_size=hidden_size,
        num_layers=1,
        share_lstm=True,
        share_embeddings=True,
        tie_output=recipe_shape,
        feed_context=recipe_shape,
        attention=attention,
        role_signal="none",
    )
    model.build()
    return model


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker_train(args) -> dict:
    from seq2seq_shared.config import TrainingConfig
    from seq2seq_shared.data.batches import Batch
    from seq2seq_shared.training.steps import compile_for_training, train_step

    batches = [Batch(*b) for b in load_batches(args.batches)]
    model = build_model(
        args.vocab_size,
        args.embedding_dim,
        args.hidden_size,
        attention=args.attention,
        recipe_shape=args.recipe_shape,
    )
    compile_for_training(model, TrainingConfig())
    start = time.perf_counter()
    for batch in batches:  # warm-up: every batch shape once (tracing, compiling)
        float(train_step(model, batch)["loss"])
    warmup_s = time.perf_counter() - start
    rates, k = [], 0
    for _ in range(args.repeats):
        tokens, t0 = 0, time.perf_counter()
        for _ in range(args.steps):
            batch = batches[k % len(batches)]
            float(train_step(model, batch)["loss"])
            tokens += batch.num_target_tokens
            k += 1
        rates.append(tokens / (time.perf_counter() - t0))
    return dict(
        mode="train",
        tokens_per_s=round(statistics.median(rates), 1),
        all_tokens_per_s=[round(r, 1) for r in rates],
        warmup_s=round(warmup_s, 2),
    )


def worker_data_path(args) -> dict:
    """Tokens/s of training steps whose batches are built from a prepared corpus (read from
    its files, or with --in-memory its arrays copied into memory first), batch building
    included; and the milliseconds a batch takes to build alone."""
    from seq2seq_shared.config import TrainingConfig
    from seq2seq_shared.training.steps import compile_for_training, train_step

    pairs, batches, vocab = prepared_batches(args)
    model = build_model(
        max(vocab["source_vocab_size"], vocab["target_vocab_size"]),
        args.embedding_dim,
        args.hidden_size,
    )
    compile_for_training(model, TrainingConfig())
    start = time.perf_counter()
    for index in range(args.steps):  # warm-up (compiling), on batches not timed later
        float(train_step(model, batches.batch(index))["loss"])
    warmup_s = time.perf_counter() - start
    rates, index = [], args.steps
    for _ in range(args.repeats):
        tokens, t0 = 0, time.perf_counter()
        for _ in range(args.steps):
            batch = batches.batch(index)
            float(train_step(model, batch)["loss"])
            tokens += batch.num_target_tokens
            index += 1
        rates.append(tokens / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for _ in range(200):  # pairs not read yet
        batches.batch(index % len(batches))
        index += 1
    return dict(
        mode="data",
        pairs=len(pairs),
        tokens_per_s=round(statistics.median(rates), 1),
        all_tokens_per_s=[round(r, 1) for r in rates],
        warmup_s=round(warmup_s, 2),
        batch_ms=round((time.perf_counter() - t0) / 200 * 1000, 3),
    )


def prepared_batches(args) -> tuple:
    """A prepared corpus's pairs (copied into memory with --in-memory), its token-budget
    batches at epoch 1, and its vocabulary sizes."""
    from seq2seq_shared import backend
    from seq2seq_shared.data.batches import ParallelBatches
    from seq2seq_shared.data.encoded import EncodedPairs
    from seq2seq_shared.data.prepared import PreparedCorpus

    corpus = PreparedCorpus(args.prepared)
    pairs = corpus.pairs()
    if args.in_memory:
        pairs = EncodedPairs(
            np.array(pairs.source_ids),
            np.array(pairs.source_offsets),
            np.array(pairs.target_ids),
            np.array(pairs.target_offsets),
            lengths=pairs.lengths,
        )
    batches = ParallelBatches(
        pairs,
        batch_tokens=args.batch_size,
        seed=1,
        multiple=backend.shape_multiple(),
        fixed_shapes=not backend.dynamic_shapes(),
    )
    batches.set_epoch(1)
    return pairs, batches, corpus.manifest["vocab"]


def worker_decode(args) -> dict:
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.decoding.decoder import Decoder

    with np.load(args.sources) as data:
        array = data["source"]
    sources = [row[row != PAD].tolist() for row in array]
    with np.load(args.weights) as w:
        vocab_size, embedding_dim = w["embedding"].shape
        model = build_model(vocab_size, embedding_dim, w["lstm_recurrent_kernel"].shape[0])
        load_reference_weights(model, w)
    # Every sentence may run the reference's 30 steps; it stops at eos like the reference's.
    decoder = Decoder(
        model, decode_config=DecodeConfig(length_ratio=1e-9, length_offset=args.max_steps)
    )
    start = time.perf_counter()
    decoder.decode(sources, args.batch_size)  # warm-up pass: every shape once
    warmup_s = time.perf_counter() - start
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        outputs = decoder.decode(sources, args.batch_size)
        rates.append(len(sources) / (time.perf_counter() - t0))
    if args.output:  # eos trimmed, as `agreement` compares
        ids = np.zeros((len(outputs), args.max_steps), np.int64)
        for row, out in enumerate(outputs):
            ids[row, : len(out)] = out
        np.save(args.output, ids)
    return dict(
        mode="decode",
        batch_size=args.batch_size,
        sentences=len(sources),
        sentences_per_s=round(statistics.median(rates), 1),
        all_sentences_per_s=[round(r, 1) for r in rates],
        warmup_s=round(warmup_s, 2),
    )


def worker_search(args) -> dict:
    """Sentences/s of a trained model's `Translator` with the given beam (1: greedy)."""
    from seq2seq_shared.config import DecodeConfig
    from seq2seq_shared.decoding.translator import Translator

    lines = Path(args.sources).read_text(encoding="utf-8").splitlines()
    translator = Translator.from_model_dir(
        args.model_dir, DecodeConfig(batch_size=args.batch_size, beam_size=args.beam_size)
    )
    start = time.perf_counter()
    translator.translate(lines)  # warm-up pass: every shape once
    warmup_s = time.perf_counter() - start
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        translator.translate(lines)
        rates.append(len(lines) / (time.perf_counter() - t0))
    return dict(
        mode="search",
        beam_size=args.beam_size,
        batch_size=args.batch_size,
        sentences=len(lines),
        sentences_per_s=round(statistics.median(rates), 1),
        all_sentences_per_s=[round(r, 1) for r in rates],
        warmup_s=round(warmup_s, 2),
    )


def reference_variables(model) -> list[tuple[str, object]]:
    """Our model's variables by their names in the reference's weights file."""
    lstm = model.encoder_lstms[0].cell
    return [
        ("embedding", model.source_embedding.embeddings),
        ("lstm_kernel", lstm.kernel),
        ("lstm_recurrent_kernel", lstm.recurrent_kernel),
        ("lstm_bias", lstm.bias),
        ("projection_kernel", model.projection.kernel),
        ("projection_bias", model.projection.bias),
    ]


def save_reference_weights(path: Path, args) -> None:
    """Random weights of our model in the layout the reference loads (Keras layout)."""
    model = build_model(args.vocab_size, args.embedding_dim, args.hidden_size, seed=5)
    np.savez(path, **{key: np.asarray(variable) for key, variable in reference_variables(model)})


def load_reference_weights(model, weights) -> None:
    for key, variable in reference_variables(model):
        variable.assign(weights[key])


def run_worker(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "decode", "search", "data"])
    parser.add_argument("--prepared")
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument("--attention", default="none")
    parser.add_argument("--recipe-shape", action="store_true")
    parser.add_argument("--model-dir")
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--batches")
    parser.add_argument("--sources")
    parser.add_argument("--weights")
    parser.add_argument("--output")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=30)
    args = parser.parse_args(argv)
    workers = {
        "train": worker_train,
        "decode": worker_decode,
        "search": worker_search,
        "data": worker_data_path,
    }
    result = workers[args.mode](args)
    from seq2seq_shared import backend

    result.update(
        implementation="seq2seq-shared", backend=backend.name(), peak_rss_mib=peak_rss_mib()
    )
    return result


# The driver ----------------------------------------------------------------------------


def measure(command: list[str], env: dict | None = None) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def compare(name: str, ours: list[str], torch: list[str] | None, key: str, rounds: int) -> dict:
    """Alternate ours and the reference `rounds` times; medians and their ratio."""
    runs: dict[str, list[dict]] = {"ours": [], "torch": []}
    for _ in range(rounds):
        runs["ours"].append(measure(ours))
        if torch:
            runs["torch"].append(measure(torch))
    row = {
        "case": name,
        "ours": round(statistics.median(r[key] for r in runs["ours"]), 1),
        "ours_warmup_s": statistics.median(r["warmup_s"] for r in runs["ours"]),
        "ours_peak_rss_mib": max(r["peak_rss_mib"] for r in runs["ours"]),
        "unit": key,
    }
    if torch:
        reference = statistics.median(r[key] for r in runs["torch"])
        row.update(
            torch=round(reference, 1),
            ratio=round(row["ours"] / reference, 3),
            torch_peak_rss_mib=max(r["peak_rss_mib"] for r in runs["torch"]),
            ratios_by_round=[
                round(a[key] / b[key], 3) for a, b in zip(runs["ours"], runs["torch"])
            ],
        )
    return row


def agreement(ours_ids: Path, torch_ids: Path) -> float:
    """Share of sentences whose greedy outputs agree up to their end: the first eos, as
    `translate` trims them (`trim_at_eos`; Keras loads into this driver process, which
    measures nothing itself)."""
    from keras import ops

    from seq2seq_shared.decoding.greedy import trim_at_eos

    ours, theirs = (
        ops.convert_to_numpy(trim_at_eos(np.load(path))) for path in (ours_ids, torch_ids)
    )  # (sentences, steps)
    return round(float(np.mean(np.all(ours == theirs, axis=1))), 4)


def startup(model_dir: Path) -> dict:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            ["seq2seq-shared", "translate", "--model-dir", str(model_dir)],
            input="Ein Hund.\n",
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - t0)
    return {
        "case": "translate one line, whole process",
        "seconds": round(statistics.median(times), 2),
        "all_seconds": [round(t, 2) for t in times],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(run_worker(sys.argv[2:])), flush=True)
        return
    args = parse_arguments()
    me = [sys.executable, str(Path(__file__).resolve()), "worker"]
    summary: dict = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "command": " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]]),
        "cases": [],
    }
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        if args.scaling:
            summary["cases"] = scaling(me, work, args)
        elif args.attention_cases:
            summary["cases"] = alternating(
                me, work, args, "tokens_per_s", attention_cases(work, args)
            )
        elif args.baseline:
            summary["cases"] = against_baseline(me, work, args)
        elif args.prepared:
            summary["cases"] = alternating(me, work, args, "tokens_per_s", prepared_cases(args))
        elif args.search_model:
            if not args.search_source:
                raise SystemExit("error: --search-model needs --search-source")
            summary["cases"] = alternating(me, work, args, "sentences_per_s", search_cases(args))
        else:
            comparisons(me, work, args, summary)
    print(json.dumps(summary, indent=1))


def attention_cases(work: Path, args) -> dict[str, list[str]]:
    """Training steps of the recipe's shape with each attention, on the same batches."""
    batches = str(attention_batches(work, args))
    return {
        kind: ["train", "--recipe-shape", "--attention", kind, "--steps", str(args.steps)]
        + ["--batches", batches]
        for kind in ("none", "dot", "general")
    }


def prepared_cases(args) -> dict[str, list[str]]:
    """Training from a prepared corpus held in memory and read from its files."""
    common = ["data", "--prepared", str(args.prepared), "--steps", str(args.steps)]
    common += ["--batch-size", "3072"]
    return {"in memory": [*common, "--in-memory"], "from the files": common}


def search_cases(args) -> dict[str, list[str]]:
    """Greedy search and beam 5 and 10 on one model and source file, batch 64."""
    return {
        f"beam {k}": ["search", "--model-dir", str(args.search_model)]
        + ["--sources", str(args.search_source), "--beam-size", str(k)]
        + ["--batch-size", "64", "--repeats", "2"]
        for k in (1, 5, 10)
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multi30k", type=Path, help="Multi30k directory (train/val .de/.en)")
    parser.add_argument("--compare-torch", action="store_true")
    parser.add_argument(
        "--torch-python",
        default=sys.executable,
        help="a Python with torch installed (default: this one)",
    )
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--model-dir", type=Path, help="a trained model, for the start-up time")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per case")
    parser.add_argument("--steps", type=int, default=30, help="training steps per repeat")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="instead: ours alone, batch 16, 64, 256 x hidden 256, 512, 1024",
    )
    parser.add_argument("--skip-decode", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument(
        "--attention-cases",
        action="store_true",
        help="instead: training tokens/s of the recipe's shape, attention none / dot / general",
    )
    parser.add_argument(
        "--search-model",
        type=Path,
        help="instead: a trained model's sentences/s, greedy beside beam 5, 10",
    )
    parser.add_argument("--search-source", type=Path, help="source lines for --search-model")
    parser.add_argument(
        "--prepared",
        type=Path,
        help="a prepared corpus: the data path, read from its files vs in memory",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="instead: this checkout beside the one in this directory "
        "(training and decoding, alternating)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep the batches, sources and weights here (default: a temporary directory)",
    )
    return parser.parse_args()


def comparisons(me: list[str], work: Path, args, summary: dict) -> None:
    """The default run: training and decoding cases, ours beside the reference with
    --compare-torch, and the start-up time with --model-dir, added to `summary`."""
    torch = [args.torch_python, str(args.reference)] if args.compare_torch else None
    datasets = {"synthetic": work / "synthetic.npz"}
    save_batches(datasets["synthetic"], synthetic_batches(8000, 64))
    save_sources(
        work / "synthetic_sources.npz",
        [list(row[row != PAD]) for b in synthetic_batches(8000, 64, seed=1) for row in b[0]],
    )
    sources = {"synthetic": work / "synthetic_sources.npz"}
    if args.multi30k:
        summary["multi30k"] = multi30k_data(args.multi30k, work)
        datasets["multi30k"] = work / "multi30k_batches.npz"
        sources["multi30k"] = work / "multi30k_sources.npz"
    steps = ["--steps", str(args.steps)]
    for name, path in ({} if args.skip_train else datasets).items():
        batches = ["--batches", str(path)]
        summary["cases"].append(
            compare(
                f"train {name}",
                me + ["train", *batches, *steps],
                torch and torch + ["train", *batches, *steps],
                "tokens_per_s",
                args.rounds,
            )
        )
    summary["cases"] += decode_cases(
        me, torch, work, {} if args.skip_decode else sources, args.rounds
    )
    if args.model_dir:
        summary["cases"].append(startup(args.model_dir))


def decode_cases(
    me: list[str], torch: list[str] | None, work: Path, sources: dict[str, Path], rounds: int
) -> list[dict]:
    """Decoding each set of `sources` at batch 64 and 1024, with the same random weights."""
    weights = work / "weights.npz"
    save_reference_weights(
        weights, argparse.Namespace(vocab_size=8000, embedding_dim=256, hidden_size=512)
    )
    rows = []
    for name, path in sources.items():
        for batch_size in (64, 1024):
            common = [
                "--sources",
                str(path),
                "--weights",
                str(weights),
                "--batch-size",
                str(batch_size),
                "--max-steps",
                "30",
            ]
            ours_ids, torch_ids = work / "ours.npy", work / "torch.npy"
            row = compare(
                f"decode {name} batch {batch_size}",
                me + ["decode", *common, "--output", str(ours_ids)],
                torch and torch + ["decode", *common, "--early-stop", "--output", str(torch_ids)],
                "sentences_per_s",
                rounds,
            )
            if torch:
                row["identical_outputs"] = agreement(ours_ids, torch_ids)
            rows.append(row)
    return rows


def attention_batches(work: Path, args) -> Path:
    """Multi30k's batches with --multi30k, else synthetic ones."""
    if args.multi30k:
        multi30k_data(args.multi30k, work)
        return work / "multi30k_batches.npz"
    path = work / "synthetic.npz"
    save_batches(path, synthetic_batches(8000, 64))
    return path


def alternating(
    me: list[str], work: Path, args, key: str, cases: dict[str, list[str]]
) -> list[dict]:
    """Each case's median of `key` over --rounds alternations, and its ratio to the first
    case's (measured in the same run: this host drifts)."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, command in cases.items():
            runs[name].append(measure(me + command)[key])
    first = statistics.median(next(iter(runs.values())))
    return [
        {
            "case": name,
            key: round(statistics.median(values), 1),
            "all": values,
            "ratio_to_" + next(iter(cases)).replace(" ", "_"): round(
                statistics.median(values) / first, 3
            ),
        }
        for name, values in runs.items()
    ]


def against_baseline(me: list[str], work: Path, args) -> list[dict]:
    """Training and decoding, this checkout and the one in --baseline alternating on the
    same batches, sources and weights; medians and the ratio this / baseline."""
    baseline = args.baseline.resolve()
    if not (baseline / "scripts" / "benchmark.py").is_file():
        raise SystemExit(
            f"error: {baseline}: not a seq2seq-shared checkout (no scripts/benchmark.py)"
        )
    theirs = [sys.executable, str(baseline / "scripts" / "benchmark.py"), "worker"]
    env = {**os.environ, "PYTHONPATH": str(baseline)}
    weights = work / "weights.npz"
    save_reference_weights(
        weights, argparse.Namespace(vocab_size=8000, embedding_dim=256, hidden_size=512)
    )
    sources = work / "synthetic_sources.npz"
    save_synthetic_sources(sources, count=16)
    decode = ["decode", "--sources", str(sources), "--weights", str(weights)]
    cases = {
        "train (recipe shape, dot attention)": (attention_cases(work, args)["dot"], "tokens_per_s"),
        "decode (batch 64)": ([*decode, "--batch-size", "64"], "sentences_per_s"),
    }
    rows = []
    for name, (command, key) in cases.items():
        ours, before = [], []
        for _ in range(args.rounds):
            ours.append(measure(me + command)[key])
            before.append(measure(theirs + command, env)[key])
        this, reference = statistics.median(ours), statistics.median(before)
        rows.append(
            {"case": name, "unit": key, "this": this, "baseline": reference}
            | {"all_this": ours, "all_baseline": before, "ratio": round(this / reference, 3)}
        )
    return rows


def save_synthetic_sources(path: Path, count: int) -> None:
    """The source sides of `count` synthetic batches of 64 (seed 1), unpadded."""
    batches = synthetic_batches(8000, 64, count=count, seed=1)
    save_sources(path, [list(row[row != PAD]) for b in batches for row in b[0]])


def scaling(me: list[str], work: Path, args) -> list[dict]:
    rows = []
    for hidden in (256, 512, 1024):
        weights = work / f"weights{hidden}.npz"
        save_reference_weights(
            weights, argparse.Namespace(vocab_size=8000, embedding_dim=256, hidden_size=hidden)
        )
        for batch_size in (16, 64, 256):
            batches = work / f"b{batch_size}.npz"
            save_batches(batches, synthetic_batches(8000, batch_size, count=8))
            sources = work / f"s{batch_size}.npz"
            save_synthetic_sources(sources, count=8)
            size = ["--hidden-size", str(hidden)]
            steps = str(max(4, 480 // batch_size))
            train = measure(
                me + ["train", "--batches", str(batches), "--steps", steps, "--repeats", "1", *size]
            )
            decode = measure(
                me
                + ["decode", "--sources", str(sources), "--weights", str(weights)]
                + ["--batch-size", str(batch_size), "--repeats", "1"]
            )
            rows.append(
                {
                    "hidden": hidden,
                    "batch": batch_size,
                    "train_tokens_per_s": train["tokens_per_s"],
                    "decode_sentences_per_s": decode["sentences_per_s"],
                    "train_peak_rss_mib": train["peak_rss_mib"],
                }
            )
    return rows


if __name__ == "__main__":
    main()
