"""Data-parallel training (`--devices`, several processes) without GPUs: on JAX, two
virtual CPU devices and two processes on 127.0.0.1; on TensorFlow, a MirroredStrategy
over two logical CPU devices and a MultiWorkerMirroredStrategy of two processes on
127.0.0.1; each against one device on the same global batches.

Tolerance: the replicas sum their rows' gradients in another order than one device does,
so the figures agree to float32 rounding, not bit for bit: measured here, final weights
within 3e-8 after 43 steps and the same loss to the 4 decimals the metrics keep. The tests
allow 1e-5 on weights and 1e-4 relative on losses.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY

from seq2seq_shared.cli import main
from seq2seq_shared.data.batches import ParallelBatches
from seq2seq_shared.training import checkpoint

pytestmark = pytest.mark.slow  # trains models or starts processes: the full run only

pytest.importorskip("jax")

RUN = [*TINY, "--checkpoint-every", "4", "--dropout", "0.3"]


def seq2seq(*arguments, env=None, check=True):
    command = [sys.executable, "-m", "seq2seq_shared.cli", *map(str, arguments)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "jax", **(env or {})},
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def final(model_dir):
    arrays, state = checkpoint.read(sorted((model_dir / "checkpoints").glob("*.npz"))[-1])
    return arrays, state


def assert_same_training(model_dir, reference_dir):
    arrays, state = final(model_dir)
    reference, reference_state = final(reference_dir)
    assert state["step"] == reference_state["step"]
    for key in ("train_loss", "valid_loss"):  # per epoch
        losses = [row.get(key, np.nan) for row in state["history"]]
        reference_losses = [row.get(key, np.nan) for row in reference_state["history"]]
        np.testing.assert_allclose(losses, reference_losses, rtol=1e-4, err_msg=key)
    assert sorted(arrays) == sorted(reference)
    for key in arrays:
        np.testing.assert_allclose(arrays[key], reference[key], atol=1e-5, err_msg=key)


@pytest.fixture(scope="module")
def prepared(numbers_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("parallel") / "prepared"
    seq2seq(
        "prepare",
        numbers_corpus / "train.en",
        numbers_corpus / "train.de",
        directory,
        "--vocab-size",
        "120",
    )
    return directory


def valid_options(corpus):
    return ["--valid", str(corpus / "train.en"), str(corpus / "train.de")]


@pytest.fixture(scope="module")
def one_device(prepared, numbers_corpus):
    """The reference: one device, 2 epochs, validated (the best weights are kept)."""
    model_dir = prepared.parent / "one_device"
    seq2seq("train", prepared, "--model-dir", model_dir, *RUN, *valid_options(numbers_corpus))
    return model_dir


def test_two_virtual_devices_follow_the_one_device_loss_curve(prepared, one_device, numbers_corpus):
    model_dir = prepared.parent / "two_devices"
    done = seq2seq(
        "train",
        prepared,
        "--model-dir",
        model_dir,
        *RUN,
        "--devices",
        "2",
        *valid_options(numbers_corpus),
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert "data parallel on 2 device(s)" in done.stderr
    assert_same_training(model_dir, one_device)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (held open together while chosen)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def two_processes(prepared, model_dir, *extra):
    """JAX: two processes joined through --coordinator; both processes' results."""
    (port,) = free_ports(1)
    return run_together(
        prepared,
        model_dir,
        [
            *RUN,
            *extra,
            "--devices",
            "all",
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
        ],
        [{"KERAS_BACKEND": "jax"}] * 2,
        process_ids=True,
    )


def run_together(prepared, model_dir, options, environments, process_ids=False):
    """Both processes' last output lines (JSON); their output goes to files, not pipes: a
    full pipe would stop one process while the other waits for it in a collective."""
    logs = prepared.parent / "logs"
    logs.mkdir(exist_ok=True)
    processes = []
    for index, environment in enumerate(environments):
        with open(logs / f"{index}.out", "w") as out, open(logs / f"{index}.err", "w") as err:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "seq2seq_shared.cli",
                        "train",
                        str(prepared),
                        "--model-dir",
                        str(model_dir),
                        *options,
                        *(["--process-id", str(index)] if process_ids else []),
                    ],
                    env={**os.environ, **environment},
                    stdout=out,
                    stderr=err,
                )
            )
    try:
        for process in processes:
            process.wait(timeout=300)
    finally:
        for process in processes:
            process.kill()
    for index, process in enumerate(processes):
        assert process.returncode == 0, (logs / f"{index}.err").read_text()[-3000:]
    return [
        json.loads((logs / f"{index}.out").read_text().strip().splitlines()[-1]) for index in (0, 1)
    ]


def test_two_processes_on_loopback_train_one_model_directory_and_resume(
    prepared, one_device, numbers_corpus
):
    model_dir = prepared.parent / "two_processes"
    valid = valid_options(numbers_corpus)
    first = two_processes(prepared, model_dir, "--epochs", "1", *valid)
    assert "valid_bleu" in first[0]  # validated (greedy decoding) in both processes
    timing = {"minutes", "target_tokens_per_second"}
    assert [{k: v for k, v in result.items() if k not in timing} for result in first] == [
        {k: v for k, v in first[0].items() if k not in timing}
    ] * 2  # the same in both
    assert first[0]["epoch"] == 1.0
    resumed = two_processes(prepared, model_dir, "--epochs", "2", *valid)
    assert resumed[0]["epoch"] == 2.0
    assert_same_training(model_dir, one_device)
    source = numbers_corpus / "train.en"  # translated here, under TensorFlow: portable
    translations = [
        CliRunner()
        .invoke(main, ["translate", "--model-dir", str(directory), "-i", str(source)])
        .stdout
        for directory in (model_dir, one_device)
    ]
    assert translations[0] == translations[1]
    assert len(translations[0].splitlines()) == 200


@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_batches_get_empty_rows_up_to_a_multiple_of_the_devices(fixed_shapes):
    sources = [[5] * n for n in range(1, 12)]
    targets = [[6] * n for n in range(1, 12)]
    batches = ParallelBatches.from_lists(
        sources, targets, batch_tokens=30, seed=1, fixed_shapes=fixed_shapes
    )
    plain = [batches.batch(i) for i in range(len(batches))]
    assert any(len(batch.source) % 4 for batch in plain)  # the padding has work to do
    batches.row_multiple = 4
    for index, batch in enumerate(plain):
        padded = batches.batch(index)
        assert len(padded.source) % 4 == 0
        assert padded.num_target_tokens == batch.num_target_tokens
        assert (padded.source[: len(batch.source)] == batch.source).all()


@pytest.fixture(scope="module")
def tensorflow_one_device(prepared, numbers_corpus):
    """TensorFlow's reference: one device, without dropout (under a MirroredStrategy each
    replica draws its own dropout masks: the same distribution, not the same numbers)."""
    model_dir = prepared.parent / "tensorflow_one_device"
    seq2seq(
        "train",
        prepared,
        "--model-dir",
        model_dir,
        *RUN,
        "--dropout",
        "0",
        "--clip-norm",
        "0.05",
        *valid_options(numbers_corpus),
        env={"KERAS_BACKEND": "tensorflow"},
    )
    return model_dir


def test_tensorflow_mirrored_on_two_logical_cpus_follows_one_device_and_resumes_exactly(
    prepared, tensorflow_one_device, numbers_corpus, tmp_path
):
    """--clip-norm 0.05 makes clipping act at every step: Keras alone would clip each
    replica's part of the gradient, not their sum (parallel.mirrored_adam)."""
    options = [
        *RUN,
        "--dropout",
        "0",
        "--clip-norm",
        "0.05",
        *valid_options(numbers_corpus),
        "--devices",
        "2",
    ]
    tensorflow = {"KERAS_BACKEND": "tensorflow"}
    whole = tmp_path / "whole"
    done = seq2seq("train", prepared, "--model-dir", whole, *options, env=tensorflow)
    assert "data parallel on 2 device(s)" in done.stderr and "MirroredStrategy" in done.stderr
    assert_same_training(whole, tensorflow_one_device)
    resumed = tmp_path / "resumed"  # stopped after epoch 1, then resumed: bit-identical
    seq2seq("train", prepared, "--model-dir", resumed, *options, "--epochs", "1", env=tensorflow)
    seq2seq("train", prepared, "--model-dir", resumed, *options, env=tensorflow)
    arrays, reference = final(resumed)[0], final(whole)[0]
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], reference[key], err_msg=key)


def test_tensorflow_two_workers_on_loopback_follow_one_device_and_resume(
    prepared, tensorflow_one_device, numbers_corpus
):
    """MultiWorkerMirroredStrategy: two processes described by TF_CONFIG, each with its
    CPU; stopped after epoch 1 and resumed by both."""
    model_dir = prepared.parent / "tensorflow_workers"
    options = [*RUN, "--dropout", "0", "--clip-norm", "0.05", *valid_options(numbers_corpus)]
    for epochs in ("1", "2"):
        workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
        environments = [
            {
                "KERAS_BACKEND": "tensorflow",
                "TF_CONFIG": json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
                ),
            }
            for index in (0, 1)
        ]
        results = run_together(prepared, model_dir, [*options, "--epochs", epochs], environments)
        assert results[0]["epoch"] == float(epochs)
    assert "MultiWorkerMirroredStrategy" in (prepared.parent / "logs" / "0.err").read_text()
    assert_same_training(model_dir, tensorflow_one_device)


def test_bad_cluster_options_are_usage_errors_and_tensorflow_hosts_come_from_tf_config(tmp_path):
    runner = CliRunner()
    for options, message in (
        (["--devices", "two"], "--devices must be a positive number"),
        (["--num-processes", "2"], "need --coordinator"),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id must be in 0..1",
        ),
    ):
        result = runner.invoke(
            main, ["train", str(tmp_path), "--model-dir", str(tmp_path / "m"), *options]
        )
        assert result.exit_code == 2 and message in result.output, result.output
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq_shared.cli",
            "train",
            str(tmp_path),
            "--model-dir",
            str(tmp_path / "m"),
            "--coordinator",
            "127.0.0.1:1",
            "--num-processes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"},
    )
    assert done.returncode == 1 and "described by the TF_CONFIG" in done.stderr


@pytest.mark.parametrize(
    "values, same",
    [([1000, 1000], True), ([1000, 1001], False), ([3, 3, 3, 4], False), ([0, 0, 0, 0], True)],
)
def test_processes_that_resume_from_different_steps_are_refused(values, same, monkeypatch):
    """Replicas.check_same's verdict from the sums over the processes (one device each)."""
    from seq2seq_shared.training.parallel import Replicas

    replicas = Replicas(None, devices=len(values), process=0, processes=len(values))
    sums = (float(sum(values)), float(sum(v * v for v in values)))
    monkeypatch.setattr(replicas, "_sums", lambda value: sums)
    if same:
        replicas.check_same(values[0], "the step")
    else:
        with pytest.raises(ValueError, match="the processes disagree on the step"):
            replicas.check_same(values[0], "the step")


def test_each_of_two_devices_gets_half_of_the_rows():
    """The runs above match one device whether or not the batch is split (a replicated
    batch gives the same step): here, the split itself."""
    script = """
import numpy as np
from seq2seq_shared.training.parallel import Cluster, start
replicas = start(Cluster(devices="2"))
array = np.arange(12).reshape(6, 2)
placed = replicas.place(array)
shards = sorted((shard.index[0].start or 0, np.asarray(shard.data).tolist())
                for shard in placed.addressable_shards)
assert [rows for _, rows in shards] == [array[:3].tolist(), array[3:].tolist()], shards
assert len({shard.device for shard in placed.addressable_shards}) == 2
print("split")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    assert done.returncode == 0 and "split" in done.stdout, done.stderr[-2000:]
