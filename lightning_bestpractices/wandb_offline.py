"""Read back an offline W&B run (``wandb/offline-run-*/run-*.wandb``) without an account or network.

wandb >= 0.18 writes offline runs only as a binary ``.wandb`` transaction log (no ``wandb-summary.json``), and no
longer ships a Python reader for it. This module parses that log (leveldb-log framing of wandb's own protobuf
``Record`` messages) so that tests, and users checking a run before ``wandb sync``, can see what was logged:
the config, every history row, and the images and tables that were logged.

The log is written by W&B's service process, asynchronously: ``run.finish()`` in one process does not promise that
another reader already sees every record. A run's log is *complete* once its exit record is in it;
``read_offline_run(path, wait=30)`` waits (polling the file, up to ``wait`` seconds) until it is, and raises
:class:`IncompleteRunLog` naming the file and what is missing if it never becomes complete. A log cut short (a run
that crashed, or one still being written) is read up to its last whole record, with ``complete=False``; a record
whose checksum fails with more log after it is corruption, and raises :class:`CorruptRunLog` with the byte offset.

Examples:
    >>> import os, tempfile, wandb
    >>> os.environ["WANDB_SILENT"] = "true"
    >>> d = tempfile.mkdtemp()
    >>> run = wandb.init(mode="offline", dir=d, project="doc", config={"lr": 0.1}, reinit="create_new")
    >>> for step in range(3):
    ...     run.log({"loss": 1.0 / (step + 1)})
    >>> run.finish()
    >>> r = read_offline_run(find_offline_runs(d)[0], wait=60)
    >>> r.complete, r.config["lr"], [row["loss"] for row in r.history]
    (True, 0.1, [1, 0.5, 0.3333333333333333])
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_bestpractices.errors import ArgumentError

__all__ = ["OfflineRun", "read_offline_run", "find_offline_runs", "CorruptRunLog", "IncompleteRunLog"]

_BLOCK = 32768
_HEADER = 7  # crc32 (4) + length (2) + record type (1); the file header (":W&B", magic, version) is 7 bytes too
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class CorruptRunLog(ValueError):
    """A record in the middle of a run log fails its checksum or its framing (not a log that was cut short)."""


class IncompleteRunLog(TimeoutError):
    """``read_offline_run(..., wait=...)`` ran out of time before the run's exit record was written."""


@dataclass
class OfflineRun:
    """What an offline run logged: ``config`` (nested dict), ``history`` (one dict per ``log`` call), and
    ``summary`` (the last value of every history key, updated by explicit summary writes).

    ``complete`` is True once the run's exit record is in the log (the run finished and W&B wrote everything);
    ``exit_code`` is the code it recorded then. ``records`` counts the whole records read; ``end_offset`` is the
    byte offset just past the last of them (the rest of the file, if any, was cut short).

    Metric names keep their slashes (``"val/acc"``); media and tables are dicts (``row["plot"]["_type"]``)."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    exit_code: int | None = None
    records: int = 0
    end_offset: int = 0

    def values(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in order."""
        return [row[key] for row in self.history if key in row]

    @property
    def files_dir(self) -> Path:
        return self.path.parent / "files"

    @property
    def save_dir(self) -> Path:
        """The logger's ``save_dir``: W&B writes ``<save_dir>/wandb/offline-run-*/run-*.wandb``. In a
        :class:`~lightning_bestpractices.cli.BestPracticesCLI` run it is the run folder."""
        return self.path.parent.parent.parent


def find_offline_runs(root: str | Path) -> list[Path]:
    """All ``run-*.wandb`` files under ``root`` (searched recursively), oldest first."""
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"))


def _records(data: bytes, path: Path, ends: list[int]) -> Iterator[bytes]:
    """Yield every whole, checksummed record of a leveldb-framed log; append the end offset of each to ``ends``.

    Stops quietly where the log is cut short (a header or payload past the end of the data, a torn last record);
    raises :class:`CorruptRunLog` where a chunk fails its CRC (or the framing breaks) and more log follows it.
    """
    if data[:4] != b":W&B":
        raise ArgumentError(f"`path` is not a W&B transaction log, got {str(path)!r}")
    pos, pending, start = _HEADER, b"", None
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if length == 0 and kind == 0 and crc == 0:  # zero padding up to the end of the block
            pos += left
            continue
        end = pos + _HEADER + length
        if end > len(data):  # cut short inside this chunk
            return
        chunk = data[pos + _HEADER : end]
        bad = zlib.crc32(bytes([kind]) + chunk) != crc or length > left - _HEADER or kind not in (1, 2, 3, 4)
        bad = bad or (kind in (_MIDDLE, _LAST) and start is None) or (kind in (_FULL, _FIRST) and start is not None)
        if bad:
            if not data[end:].strip(b"\0"):  # nothing but padding after it: a torn last write
                return
            raise CorruptRunLog(
                f"W&B run log {str(path)!r}: the record at byte offset {pos} fails its "
                f"{'checksum' if zlib.crc32(bytes([kind]) + chunk) != crc else 'framing'} check, "
                f"and {len(data) - end} bytes of log follow it"
            )
        pos = end
        if kind == _FULL:
            ends.append(pos)
            yield chunk
        elif kind == _FIRST:
            pending, start = chunk, pos
        elif kind == _MIDDLE:
            pending += chunk
        else:  # _LAST
            ends.append(pos)
            yield pending + chunk
            pending, start = b"", None


def _set_nested(target: dict, keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value


def _parse(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun(path=path)
    ends: list[int] = [_HEADER]
    for raw in _records(path.read_bytes(), path, ends):
        rec = pb.Record()
        rec.ParseFromString(raw)
        run.records += 1
        kind = rec.WhichOneof("record_type")
        config = rec.run.config if kind == "run" else rec.config if kind == "config" else None
        if config is not None:
            for item in config.update:
                if item.key == "_wandb" or list(item.nested_key)[:1] == ["_wandb"]:
                    continue
                keys = list(item.nested_key) or [item.key]
                value = json.loads(item.value_json)
                _set_nested(run.config, keys, value)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _set_nested(row, list(item.nested_key) or [item.key], json.loads(item.value_json))
            run.history.append(row)
            run.summary.update(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _set_nested(run.summary, list(item.nested_key) or [item.key], json.loads(item.value_json))
        elif kind == "exit":
            run.complete, run.exit_code = True, int(rec.exit.exit_code)
    run.end_offset = ends[-1]
    return run


def read_offline_run(path: str | Path, *, wait: float | None = None) -> OfflineRun:
    """Parse one ``run-*.wandb`` file (or an ``offline-run-*`` folder) into an :class:`OfflineRun`.

    Args:
        path: the ``run-*.wandb`` file, or the ``offline-run-*`` folder holding it.
        wait: if given, seconds to wait for the run to be complete (its exit record written), re-reading the file
            as it grows; raises :class:`IncompleteRunLog` if it is not complete by then. ``None`` (default) reads
            what is there now and reports it through ``complete``.

    A log that ends in the middle of a record is read up to its last whole record (``complete=False``); a record
    that fails its checksum with more log after it raises :class:`CorruptRunLog`, naming the file and offset.
    """
    if wait is not None and not wait >= 0:
        raise ArgumentError(f"`wait` must be None or a number of seconds >= 0, got {wait!r}")
    path = Path(path)
    deadline = None if wait is None else time.monotonic() + wait
    pause = 0.01
    while True:
        found = _resolve(path, missing_ok=deadline is not None)
        if found is not None:
            run = _parse(found)
            if run.complete or deadline is None:
                return run
        if time.monotonic() >= deadline:
            if found is None:
                raise IncompleteRunLog(f"`path` {str(path)!r} holds no run-*.wandb file after waiting {wait} s")
            raise IncompleteRunLog(
                f"W&B run log {str(found)!r} has no exit record after waiting {wait} s: the run has not finished "
                f"(or crashed); read {run.records} whole records, up to byte {run.end_offset} of "
                f"{found.stat().st_size}"
            )
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))  # poll the growing file, backing off
        pause = min(pause * 2, 0.5)


def _resolve(path: Path, missing_ok: bool) -> Path | None:
    if path.is_dir():
        found = sorted(path.glob("run-*.wandb"))
        if found:
            return found[0]
        if missing_ok:
            return None
        raise FileNotFoundError(f"`path` holds no run-*.wandb file: {str(path)!r}")
    if not path.exists():
        if missing_ok:
            return None
        raise FileNotFoundError(f"`path` does not exist: {str(path)!r}")
    return path
