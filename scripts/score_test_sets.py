"""Score a model on every test set in a folder: cased BLEU, lowercased BLEU, chrF per set.

    python scripts/score_test_sets.py --model-dir M --test-dir tests/ --source de --target en \
        --output results

A test set is a pair NAME.<source> / NAME.<target> in --test-dir. Writes results.md (a
Markdown table) and results.json (every measure and the sacreBLEU signatures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seq2seq_shared.data.files import atomic_write_text
from seq2seq_shared.decoding.evaluate import quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--source", required=True, help="source file suffix, e.g. de")
    parser.add_argument("--target", required=True, help="reference file suffix, e.g. en")
    parser.add_argument(
        "--output", type=Path, default=Path("results"), help="writes OUTPUT.md and OUTPUT.json"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    pairs = [
        (path, path.with_suffix("." + args.target))
        for path in sorted(args.test_dir.glob("*." + args.source))
    ]
    pairs = [(source, reference) for source, reference in pairs if reference.exists()]
    if not pairs:
        raise SystemExit(
            f"error: no NAME.{args.source} / NAME.{args.target} pairs in {args.test_dir}"
        )

    from seq2seq_shared import Translator
    from seq2seq_shared.data.batches import read_parallel

    translator = Translator.from_model_dir(args.model_dir)
    results = {}
    for source, reference in pairs:
        sources, references = read_parallel(source, reference)
        hypotheses = translator.translate(sources, batch_size=args.batch_size)
        results[source.stem] = quality(hypotheses, references)
        print(f"{source.stem}: BLEU {results[source.stem]['bleu']}", file=sys.stderr)

    rows = [
        "| test set | sentences | BLEU | BLEU (lowercased) | chrF |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows += [
        f"| {name} | {r['sentences']} | {r['bleu']} | {r['bleu_lowercase']} | {r['chrf']} |"
        for name, r in results.items()
    ]
    signatures = next(iter(results.values()))["signatures"]
    rows += ["", *(f"- {name}: `{signature}`" for name, signature in signatures.items())]
    atomic_write_text(args.output.with_suffix(".md"), "\n".join(rows) + "\n")
    atomic_write_text(
        args.output.with_suffix(".json"),
        json.dumps({"model_dir": args.model_dir, "results": results}, indent=2) + "\n",
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
