"""One writer for every output: FIFOs, devices and symlinks written in place, a file's mode
kept, an output never the same file as an input; for each command and script that writes."""

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.data import writer

ROOT = Path(__file__).resolve().parent.parent
LINES = ["seven", "", "twelve", "one hundred"]


class Kind:
    """A kind of output path: `make(folder)` sets it up and returns the path to give;
    `check(path)` says the output reached where it should, with `lines` lines."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name, self.reader = folder, name, None
        self.received: list[str] = []

    def make(self) -> Path:
        out = self.folder / "out.txt"
        if self.name == "fifo":
            os.mkfifo(out)
            self.reader = threading.Thread(target=self._read, args=(out,), daemon=True)
            self.reader.start()
        elif self.name == "symlink":
            (self.folder / "real.txt").write_text("old\n")
            out.symlink_to(self.folder / "real.txt")
        elif self.name == "dangling symlink":
            out.symlink_to(self.folder / "not-yet.txt")
        elif self.name == "private file":
            out.write_text("old\n")
            out.chmod(0o600)
        elif self.name == "/dev/null":
            return Path("/dev/null")
        return out

    def _read(self, path: Path) -> None:
        with open(path, encoding="utf-8") as fifo:
            self.received = fifo.read().splitlines()

    def written(self, path: Path) -> list[str]:
        """The lines that reached the output, having checked the path kept its kind."""
        if self.name == "fifo":
            self.reader.join(60)
            assert stat.S_ISFIFO(os.lstat(path).st_mode)
            return self.received
        if self.name == "/dev/null":
            assert stat.S_ISCHR(os.stat(path).st_mode)
            return None
        if self.name in ("symlink", "dangling symlink"):
            assert path.is_symlink(), "the link was replaced by a file"
        if self.name == "private file":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the file's mode was widened"
        return path.read_text(encoding="utf-8").splitlines()


KINDS = ["fifo", "symlink", "dangling symlink", "/dev/null", "private file"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_writer_writes_every_kind_of_path_as_it_should(tmp_path, kind):
    output = Kind(tmp_path, kind)
    path = output.make()
    assert writer.write_lines(LINES, path) == len(LINES)
    assert output.written(path) in (LINES, None)


def test_the_writer_never_renames_over_what_is_not_a_regular_file(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(writer.WriteError, match="not a regular file"):
        writer.atomic_write_text(tmp_path / "folder", "x")
    assert (tmp_path / "folder").is_dir()


def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_work(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a\n")
    (tmp_path / "link").symlink_to(source)
    for output in (source, tmp_path / "link", tmp_path / "." / "in.txt"):
        with pytest.raises(ValueError, match="same file as the input"):
            writer.check_outputs({"-o": output}, {"-i": source})
    with pytest.raises(ValueError, match="same file as the output"):
        writer.check_outputs({"-o": tmp_path / "x", "--alignments": tmp_path / "x"})
    writer.check_outputs({"-o": Path("/dev/null"), "--alignments": Path("/dev/null")})
    assert source.read_text() == "a\n"


# Each command and script that writes a user's file, as (arguments, output lines).
def _input(folder: Path) -> Path:
    path = folder / "in.txt"
    path.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    return path


def _reference(folder: Path) -> Path:
    path = folder / "reference.txt"
    path.write_text("sieben\n\nzwoelf\nhundert\n", encoding="utf-8")
    return path


WRITERS = {
    "translate -o": lambda m, i, o: ["translate", "--model-dir", m, "-i", i, "-o", o],
    "translate --alignments": lambda m, i, o: [
        "translate",
        "--model-dir",
        m,
        "-i",
        i,
        "-o",
        "/dev/null",
        "--alignments",
        o,
    ],
    "evaluate -o": lambda m, i, o: [
        "evaluate",
        "--model-dir",
        m,
        "--source",
        i,
        "--reference",
        _reference(Path(i).parent),
        "-o",
        o,
    ],
}


def _run(arguments) -> object:
    return CliRunner().invoke(main, [str(a) for a in arguments])


@pytest.mark.parametrize("kind", [*KINDS, "the input"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_command_that_writes_uses_the_writer(trained, tmp_path, writer, kind):
    source = _input(tmp_path)
    if kind == "the input":
        result = _run(WRITERS[writer](trained, source, source))
        assert result.exit_code == 1 and "same file as the input" in result.output
        assert source.read_text(encoding="utf-8").splitlines() == LINES  # untouched
        return
    output = Kind(tmp_path, kind)
    path = output.make()
    result = _run(WRITERS[writer](trained, source, path))
    assert result.exit_code == 0, result.output
    written = output.written(path)
    assert written is None or len(written) == len(LINES)


@pytest.mark.slow
@pytest.mark.parametrize("kind", [*KINDS, "the input"])
def test_the_bulk_script_merges_through_the_writer(trained, tmp_path, kind):
    source = _input(tmp_path)
    output = Kind(tmp_path, kind) if kind != "the input" else None
    path = source if output is None else output.make()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "batch_translate.py"),
            "--model-dir",
            str(trained),
            "-i",
            str(source),
            "-o",
            str(path),
            "--shard-lines",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if output is None:
        assert result.returncode == 1 and "same file as the input" in result.stderr
        assert source.read_text(encoding="utf-8").splitlines() == LINES
        return
    assert result.returncode == 0, result.stderr
    written = output.written(path)
    assert written is None or len(written) == len(LINES)


@pytest.mark.slow
def test_score_test_sets_reports_a_bad_set_and_scores_the_others(trained, tmp_path):
    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "good.en").write_text("seven\ntwelve\n")
    (sets / "good.de").write_text("sieben\nzwoelf\n")
    (sets / "short.en").write_text("seven\ntwelve\n")
    (sets / "short.de").write_text("sieben\n")
    (sets / "bytes.en").write_bytes(b"seven\n\xff\n")
    (sets / "bytes.de").write_text("sieben\nzwoelf\n")
    results = tmp_path / "results"
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "results.json").chmod(0o600)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "score_test_sets.py"),
            "--model-dir",
            str(trained),
            "--test-dir",
            str(sets),
            "--source",
            "en",
            "--target",
            "de",
            "--output",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    document = json.loads((tmp_path / "results.json").read_text())
    assert list(document["results"]) == ["good"]
    assert "short.en has 2 lines" in document["failed"]["short"]
    assert "bytes.en:2" in document["failed"]["bytes"] or "bytes.en:2" in result.stderr
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o600


def test_average_writes_a_whole_directory_or_nothing(trained, tmp_path, monkeypatch):
    from seq2seq_shared.model_dir import ModelDir
    from seq2seq_shared.training import average

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    output = tmp_path / "averaged"

    def killed(self, model):  # a kill (here: an error) while the weights are written
        raise KeyboardInterrupt

    monkeypatch.setattr(ModelDir, "save_weights", killed)
    with pytest.raises(KeyboardInterrupt):
        average.average_checkpoints(run, 1, output)
    assert not output.exists() and not list(tmp_path.glob(".averaged.tmp-*"))
    monkeypatch.undo()
    average.average_checkpoints(run, 1, output)  # the rerun is not refused
    assert ModelDir(output).load_model()[0] is not None


def test_evaluate_keeps_every_line_and_charges_the_misses(trained, tmp_path):
    source = tmp_path / "source.en"
    source.write_text("seven\n\ntwelve\n\none hundred\n")  # an empty source, twice
    reference = tmp_path / "reference.de"
    reference.write_text("sieben\nzwei\nzwoelf\n\nhundert\n")  # one empty reference
    output = tmp_path / "out.de"
    arguments = [
        "evaluate",
        "--model-dir",
        trained,
        "--source",
        source,
        "--reference",
        reference,
        "-o",
        output,
        "--json",
    ]
    result = _run(arguments)
    assert result.exit_code == 0, result.output
    lines = output.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == 5 and lines[1] == "" and lines[3] == ""
    report = json.loads(result.stdout)
    assert report["sentences"] == 5  # "zwei" was scored against an empty translation
    assert report["perplexity_sentences"] == 3
    assert report["excluded"] == {"from_perplexity_an_empty_side": 2}
    (tmp_path / "all.de").write_text("sieben\n\nzwoelf\n\nhundert\n")
    all_hit = json.loads(_run([*arguments[:6], tmp_path / "all.de", "--json"]).stdout)
    assert report["bleu"] < all_hit["bleu"] or report["chrf"] < all_hit["chrf"]


def test_messages_name_the_right_file(trained, tmp_path):
    missing = tmp_path / "missing.txt"
    result = _run(["translate", "--model-dir", trained, "-i", missing, "-o", tmp_path / "o"])
    assert result.exit_code == 1 and f"{missing}: no such file" in result.output
    source = _input(tmp_path)
    if Path("/dev/full").exists():  # a device that is always full
        result = _run(
            [
                "translate",
                "--model-dir",
                trained,
                "-i",
                source,
                "-o",
                "/dev/null",
                "--alignments",
                "/dev/full",
            ]
        )
        assert result.exit_code == 1, result.output
        assert "/dev/full: cannot write it (No space left on device" in result.output
    fifo = tmp_path / "corpus.en"
    os.mkfifo(fifo)
    result = _run(["prepare", fifo, source, tmp_path / "prepared"])
    assert result.exit_code == 1 and "not a regular file" in result.output
    assert "changed while" not in result.output
