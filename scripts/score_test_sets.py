"""Score a model on every test set in a folder: cased BLEU, lowercased BLEU, chrF per set.

    python scripts/score_test_sets.py --model-dir M --test-dir tests/ --source de --target en \
        --output results

A test set is a pair NAME.<source> / NAME.<target> in --test-dir. Writes results.md (a
Markdown table) and results.json (every measure and the sacreBLEU signatures). A set that
cannot be read (unequal line counts, invalid UTF-8) is reported with its file and line,
the others are still scored, and the script exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seq2seq_shared.config import DecodeConfig
from seq2seq_shared.data.writer import atomic_write_text, check_outputs
from seq2seq_shared.decoding.evaluate import quality


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--source", required=True, help="source file suffix, e.g. de")
    parser.add_argument("--target", required=True, help="reference file suffix, e.g. en")
    parser.add_argument(
        "--output", type=Path, default=Path("results"), help="writes OUTPUT.md and OUTPUT.json"
    )
    parser.add_argument("--batch-size", type=int, default=DecodeConfig.batch_size)
    args = parser.parse_args()
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, not {args.batch_size}")
    return args


def score(translator, source: Path, reference: Path, batch_size: int) -> dict:
    """One test set's scores (evaluate's reading: every line, one translation each)."""
    from seq2seq_shared.decoding.evaluate import read_test_set

    sources, references = read_test_set(source, reference)
    hypotheses = translator.translate(sources, batch_size=batch_size)
    return quality(hypotheses, references)


def table(results: dict[str, dict], failed: dict[str, str]) -> list[str]:
    rows = [
        "| test set | sentences | BLEU | BLEU (lowercased) | chrF |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows += [
        f"| {name} | {r['sentences']} | {r['bleu']} | {r['bleu_lowercase']} | {r['chrf']} |"
        for name, r in results.items()
    ]
    rows += [f"| {name} | not scored: {reason} | | | |" for name, reason in failed.items()]
    if results:
        signatures = next(iter(results.values()))["signatures"]
        rows += ["", *(f"- {name}: `{signature}`" for name, signature in signatures.items())]
    return rows


def main() -> None:
    args = parse_arguments()
    pairs = [
        (path, path.with_suffix("." + args.target))
        for path in sorted(args.test_dir.glob("*." + args.source))
    ]
    for source, reference in pairs:
        if not reference.exists():
            print(f"warning: {source} has no {reference.name}: not scored", file=sys.stderr)
    pairs = [(source, reference) for source, reference in pairs if reference.exists()]
    if not pairs:
        raise SystemExit(
            f"error: no NAME.{args.source} / NAME.{args.target} pairs in {args.test_dir}"
        )
    outputs = {
        "the table": args.output.with_suffix(".md"),
        "the JSON": args.output.with_suffix(".json"),
    }
    try:
        check_outputs(outputs, {str(path): path for pair in pairs for path in pair})
        from seq2seq_shared.runtime import load_translator  # (a release: no TensorFlow)

        translator = load_translator(args.model_dir)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    results, failed = {}, {}
    for source, reference in pairs:
        try:  # one bad set is reported; the others are still scored
            results[source.stem] = score(translator, source, reference, args.batch_size)
            print(f"{source.stem}: BLEU {results[source.stem]['bleu']}", file=sys.stderr)
        except (ValueError, OSError) as error:
            failed[source.stem] = str(error)
            print(f"error: {source.stem}: {error}", file=sys.stderr)
    rows = table(results, failed)
    document = {"model_dir": args.model_dir, "results": results, "failed": failed}
    atomic_write_text(outputs["the table"], "\n".join(rows) + "\n")
    atomic_write_text(outputs["the JSON"], json.dumps(document, indent=2) + "\n")
    print("\n".join(rows))
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
