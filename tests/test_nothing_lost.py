"""Nothing lost: output paths of every kind, full disks, damaged weights, one writer per model."""

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from seq2seq_shared.cli import main
from seq2seq_shared.data import files
from seq2seq_shared.decoding.translator import Translator
from seq2seq_shared.training.run_dir import RunDir

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
LINES = ["seven", "", "one hundred twelve", "forty-two"]
TEXT = "".join(line + "\n" for line in LINES)


def translate(model_dir, *options, input_text=TEXT):
    return CliRunner().invoke(
        main, ["translate", "--model-dir", str(model_dir), *map(str, options)], input=input_text
    )


def expected(model_dir) -> str:
    return "".join(line + "\n" for line in Translator.from_model_dir(model_dir).translate(LINES))


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def device(tmp_path, name: str) -> Path:
    """A character device like /dev/NAME: a node of its own in `tmp_path` where this process
    may make one (root), so that a regression cannot replace the machine's; else /dev/NAME."""
    real = Path("/dev") / name
    node = tmp_path / name
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.stat(real).st_rdev)
    except OSError:
        return real
    return node


def test_output_to_dev_null_keeps_the_device(trained, tmp_path):
    null = device(tmp_path, "null")
    assert translate(trained, "-o", null).exit_code == 0
    assert null.is_char_device()


def test_output_to_a_fifo_reaches_its_reader(trained, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(
        target=lambda: received.append(fifo.read_text(encoding="utf-8")), daemon=True
    )
    reader.start()
    result = translate(trained, "-o", fifo)
    reader.join(timeout=60)
    if reader.is_alive():  # nothing ever opened the FIFO for writing: release the reader
        with open(fifo, "w"):
            pass
    assert result.exit_code == 0, result.output
    assert received == [expected(trained)] and fifo.is_fifo()


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(trained, tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old\n")
    link.symlink_to(target)
    assert translate(trained, "-o", link).exit_code == 0
    assert link.is_symlink() and target.read_text(encoding="utf-8") == expected(trained)
    assert not list(tmp_path.glob(".*"))


def test_a_write_error_on_a_device_is_one_line_naming_it(trained, tmp_path):
    full = device(tmp_path, "full")
    assert_one_line_error(
        translate(trained, "-o", full), f"{full}: cannot write it", "No space left on device"
    )
    assert full.is_char_device()


@pytest.mark.slow
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(trained):
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "seq2seq_shared.cli", "translate", "--model-dir", str(trained)],
            input=TEXT,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=ENVIRONMENT,
            timeout=300,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert "standard output: cannot write it (No space left on device" in result.stderr


def no_space_for(fragment: str, monkeypatch) -> None:
    """Every fsync of a file whose name holds `fragment` fails as on a full disk."""
    fsync = os.fsync

    def full_disk_fsync(handle):
        if fragment in os.readlink(f"/proc/self/fd/{handle}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(handle)

    monkeypatch.setattr(files.os, "fsync", full_disk_fsync)


def test_output_file_on_a_full_disk_is_one_line_and_leaves_nothing(trained, tmp_path, monkeypatch):
    output = tmp_path / "out.txt"
    no_space_for("out.txt", monkeypatch)
    assert_one_line_error(
        translate(trained, "-o", output), f"{output}: cannot write it", "No space left on device"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_special_path_is_named_as_given(trained):
    assert_one_line_error(translate(trained, "-o", "/proc/version"), "/proc/version:")


@pytest.mark.slow
def test_training_into_a_full_disk_is_one_line_and_the_directory_stays_usable(
    numbers_corpus, tmp_path, monkeypatch
):
    from test_resume import train_arguments

    model_dir = tmp_path / "model"
    result = CliRunner().invoke(main, train_arguments(numbers_corpus, model_dir, "--epochs", "2"))
    assert result.exit_code == 0, result.output
    no_space_for("step-", monkeypatch)
    result = CliRunner().invoke(main, train_arguments(numbers_corpus, model_dir, "--epochs", "3"))
    assert_one_line_error(result, "checkpoints/step-0000000", "No space left on device")
    monkeypatch.undo()
    assert not list(model_dir.rglob(".*.tmp-*"))
    assert RunDir(model_dir).load_latest_checkpoint()[1]["step"] == 8
    assert translate(model_dir).exit_code == 0


def test_damaged_weights_are_refused_naming_the_file(trained, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    weights = model_dir / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = os.urandom(64)
    weights.write_bytes(bytes(data))
    for command in (["translate", "--model-dir", model_dir], ["info", "--model-dir", model_dir]):
        result = CliRunner().invoke(main, list(map(str, command)), input=TEXT)
        assert_one_line_error(result, f"{weights}: damaged", "sha256")


def test_a_format_1_directory_without_checksums_still_loads(trained, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    (model_dir / "checksums.json").unlink()
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "format_version": 1}))
    result = translate(model_dir)
    assert result.exit_code == 0 and result.output == expected(trained)


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder(numbers_corpus, tmp_path):
    from test_resume import train_arguments

    model_dir = tmp_path / "model"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom seq2seq_shared.training.run_dir import RunDir\n"
            "d = RunDir(sys.argv[1]); d.create()\nwith d.lock():\n print('held', flush=True)\n"
            " time.sleep(600)\n",
            str(model_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENVIRONMENT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(main, train_arguments(numbers_corpus, model_dir))
        assert_one_line_error(result, "another training run is writing here", f"pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunDir(model_dir).lock():  # kill -9 released it: no stale lock
        pass


def test_a_refused_training_leaves_no_directory_behind(numbers_corpus, tmp_path):
    from test_resume import train_arguments

    short = tmp_path / "short.de"
    short.write_text("eins\n")
    arguments = train_arguments(numbers_corpus, tmp_path / "new" / "model")
    arguments[2] = str(short)
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 1 and "line i of one must translate line i" in result.output
    assert not (tmp_path / "new").exists()


def test_evaluate_output_to_a_device_keeps_it(trained, numbers_corpus, tmp_path):
    null = device(tmp_path, "null")
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model-dir",
            str(trained),
            "--source",
            str(numbers_corpus / "train.en"),
            "--reference",
            str(numbers_corpus / "train.de"),
            "-o",
            str(null),
        ],
    )
    assert result.exit_code == 0, result.output
    assert null.is_char_device()
