"""Read back an offline W&B run (``wandb/offline-run-*/run-*.wandb``) without an account or network.

wandb >= 0.18 writes offline runs only as a binary ``.wandb`` transaction log (no ``wandb-summary.json``), and no
longer ships a Python reader for it. This module parses that log (leveldb-log framing of wandb's own protobuf
``Record`` messages) so that tests, and users checking a run before ``wandb sync``, can see what was logged:
the config, every history row, and the images and tables that were logged.

Example:
    >>> import os, tempfile, wandb
    >>> os.environ["WANDB_SILENT"] = "true"
    >>> d = tempfile.mkdtemp()
    >>> run = wandb.init(mode="offline", dir=d, project="doc", config={"lr": 0.1}, reinit="create_new")
    >>> for step in range(3):
    ...     run.log({"loss": 1.0 / (step + 1)})
    >>> run.finish()
    >>> r = read_offline_run(find_offline_runs(d)[0])
    >>> r.config["lr"], [row["loss"] for row in r.history]
    (0.1, [1, 0.5, 0.3333333333333333])
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OfflineRun", "read_offline_run", "find_offline_runs"]

_BLOCK = 32768
_HEADER = 7  # crc32 (4) + length (2) + record type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What an offline run logged: ``config`` (nested dict), ``history`` (one dict per ``log`` call), and
    ``summary`` (the last value of every history key, updated by explicit summary writes).

    Metric names keep their slashes (``"val/acc"``); media and tables are dicts (``row["plot"]["_type"]``)."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def values(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in order."""
        return [row[key] for row in self.history if key in row]

    @property
    def files_dir(self) -> Path:
        return self.path.parent / "files"


def find_offline_runs(root: str | Path) -> list[Path]:
    """All ``run-*.wandb`` files under ``root`` (searched recursively), oldest first."""
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"))


def _records(path: Path):
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"`path` is not a W&B transaction log, got {str(path)!r}")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if length == 0 and kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _set_nested(target: dict, keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value


def read_offline_run(path: str | Path) -> OfflineRun:
    """Parse one ``run-*.wandb`` file (or an ``offline-run-*`` folder) into an :class:`OfflineRun`."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("run-*.wandb"))
        if not found:
            raise FileNotFoundError(f"`path` holds no run-*.wandb file: {str(path)!r}")
        path = found[0]
    run = OfflineRun(path=path)
    for raw in _records(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
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
    return run
