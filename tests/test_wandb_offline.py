"""The offline W&B reader: complete logs, logs cut short, corrupt records, and waiting for a run to finish."""

from __future__ import annotations

import pytest

import lightning_bestpractices.wandb_offline as wo
from lightning_bestpractices.wandb_offline import (
    CorruptRunLog,
    IncompleteRunLog,
    find_offline_runs,
    read_offline_run,
)


@pytest.fixture(scope="module")
def log_bytes(tmp_path_factory) -> bytes:
    """A real offline run: config, 40 history rows with long keys (several blocks' worth is not needed: the
    records span FULL chunks; a long table row makes FIRST/MIDDLE/LAST chunks), and its exit record."""
    import os

    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    root = tmp_path_factory.mktemp("wandb")
    run = wandb.init(mode="offline", dir=str(root), project="t", config={"lr": 0.1, "nested": {"a": 1}},
                     reinit="create_new")  # fmt: skip
    for step in range(40):
        run.log({"loss": 1.0 / (step + 1), "blob": "x" * 3000 * (step == 20)})
    run.finish()
    [path] = find_offline_runs(root)
    return read_offline_run(path, wait=120).path.read_bytes()


def _write(tmp_path, data: bytes):
    path = tmp_path / "run-test.wandb"
    path.write_bytes(data)
    return path


def test_a_complete_log_reads_whole(tmp_path, log_bytes):
    run = read_offline_run(_write(tmp_path, log_bytes))
    assert run.complete and run.exit_code == 0 and run.end_offset == len(log_bytes)
    assert run.config == {"lr": 0.1, "nested": {"a": 1}}
    assert run.values("loss") == pytest.approx([1.0 / (s + 1) for s in range(40)])


@pytest.mark.parametrize("fraction", [1 / 3, 1 / 2, 0.9])
def test_a_log_cut_short_returns_every_whole_record(tmp_path, log_bytes, fraction):
    whole = read_offline_run(_write(tmp_path, log_bytes))
    cut = int(len(log_bytes) * fraction)
    run = read_offline_run(_write(tmp_path, log_bytes[:cut]))
    assert not run.complete and run.exit_code is None
    assert run.end_offset <= cut and 0 < run.records < whole.records
    assert run.history == whole.history[: len(run.history)], "what was read is a prefix of the whole run"


def test_a_cut_at_every_byte_never_raises(tmp_path, log_bytes):
    """Every prefix of a valid log is a valid (incomplete) log: no DecodeError, no CorruptRunLog."""
    counts = []
    for cut in range(7, len(log_bytes), 97):
        counts.append(read_offline_run(_write(tmp_path, log_bytes[:cut])).records)
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_a_corrupt_record_in_the_middle_names_file_and_offset(tmp_path, log_bytes):
    bad = bytearray(log_bytes)
    bad[len(bad) // 2] ^= 0xFF
    path = _write(tmp_path, bytes(bad))
    with pytest.raises(CorruptRunLog, match=r"run-test\.wandb.*byte offset \d+ fails its checksum") as err:
        read_offline_run(path)
    offset = int(str(err.value).split("byte offset ")[1].split()[0])
    assert offset < len(bad) // 2 < offset + 32768, "the offset is that of the record holding the flipped byte"


def test_a_torn_last_record_is_incomplete_not_corrupt(tmp_path, log_bytes):
    bad = bytearray(log_bytes)
    bad[-3] ^= 0xFF  # inside the exit record, the last one
    run = read_offline_run(_write(tmp_path, bytes(bad)))
    assert not run.complete and run.records == read_offline_run(_write(tmp_path, log_bytes)).records - 1


def test_wait_times_out_naming_the_file_and_what_is_missing(tmp_path, log_bytes):
    path = _write(tmp_path, log_bytes[: len(log_bytes) // 2])
    with pytest.raises(IncompleteRunLog, match=r"run-test\.wandb.*no exit record after waiting 0.2 s"):
        read_offline_run(path, wait=0.2)
    empty = tmp_path / "offline-run-empty"
    empty.mkdir()
    with pytest.raises(IncompleteRunLog, match=r"offline-run-empty.*holds no run-\*\.wandb file after waiting"):
        read_offline_run(empty, wait=0.0)
    with pytest.raises(FileNotFoundError, match="holds no run-"):
        read_offline_run(empty)
    with pytest.raises(ValueError, match="`wait`"):
        read_offline_run(path, wait=-1)


def test_wait_rereads_a_growing_log_until_its_exit_record(tmp_path, log_bytes, monkeypatch):
    """The reader polls: here the rest of the log arrives while it waits (its sleep is where the writer runs)."""
    path = _write(tmp_path, log_bytes[: len(log_bytes) // 3])
    polls = []

    def writer_runs(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            path.write_bytes(log_bytes)

    monkeypatch.setattr(wo.time, "sleep", writer_runs)
    run = read_offline_run(path, wait=600)
    assert run.complete and len(polls) == 2 and run.values("loss")[-1] == pytest.approx(1 / 40)
