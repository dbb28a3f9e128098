"""Shared test helpers.

DDP is tested for real: a script is launched as a subprocess with ``strategy="ddp", devices=2`` on CPU (gloo),
exactly as a user launches it. Lightning re-runs the same command line for rank 1, so the script must be a file
(see ``tests/scripts/``). Each rank writes what the test asserts on to ``--out`` and the test reads it back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# One intra-op thread per test process: the suite runs as `pytest -n 2` on 2 cores, and tiny models gain nothing
# from more threads, while spinning OpenMP threads on an oversubscribed machine make every op many times slower.
# Launched scripts get the same through OMP_NUM_THREADS in `subprocess_env`.
torch.set_num_threads(1)

# The tests never go online, whatever the shell says: W&B reads its mode once, when its process-wide settings are
# first made (by whichever test touches W&B first), so a run-level `offline=True` later does not always win.
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a launched run: W&B offline and local to ``tmp_path``, one thread per process."""
    env = dict(os.environ)
    # An in-process W&B run earlier in this pytest worker exports WANDB_SERVICE; a launched script would attach to
    # that service instead of starting its own, and its offline run log would go missing.
    env.pop("WANDB_SERVICE", None)
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def load_recipe(stem: str):
    """Import ``recipes/<stem>.py`` once per process, as module ``<stem>_recipe``.

    Registered in ``sys.modules``: jsonargparse resolves the recipe's classes (and a config's short class names,
    such as the momentum recipe's ``QuadraticBowl``) through it, and a second copy of those classes would make the
    short names ambiguous.
    """
    import importlib.util

    name = f"{stem}_recipe"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_python(args: list[str], tmp_path: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run ``python *args`` in ``tmp_path``; fail the test with the output's tail if it exits non-zero."""
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=tmp_path,
        env=subprocess_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`python {' '.join(map(str, args))}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(autouse=True)
def _restore_process_state():
    """Each test starts from the same process-wide state, whatever ran before it in this worker: the norm and
    stochastic registries are put back as they were (through their public unregister/register functions), and
    environment variables a test set or changed are reverted (W&B's own service handle aside)."""
    from lightning_bestpractices.normalization import norm_types, register_norm, unregister_norm
    from lightning_bestpractices.uncertainty import (
        register_stochastic,
        stochastic_registry,
        unregister_stochastic,
    )

    norms, stochastic, env = norm_types(), stochastic_registry(), dict(os.environ)
    yield
    for cls in set(norm_types()) - set(norms):
        unregister_norm(cls)
    for cls in norms:
        register_norm(cls)
    now = stochastic_registry()
    for cls in set(now) - set(stochastic):
        unregister_stochastic(cls)
    for cls, forward in stochastic.items():
        if now.get(cls, object()) is not forward:
            register_stochastic(cls, forward)
    own = {"WANDB_SERVICE"}  # W&B's handle on its in-process service: W&B manages it itself
    for key in set(os.environ) - set(env) - own:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if os.environ.get(k) != v and k not in own})


@pytest.fixture(autouse=True)
def _finish_wandb_run():
    """Finish any W&B run a test leaves open (LightningCLI never calls ``wandb.finish``): with a run still active,
    the next ``wandb.init`` in this worker returns that old run instead of starting its own. After a disabled-mode
    run, W&B's process-wide settings keep ``mode=disabled``; ``teardown`` resets them."""
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        disabled = type(wandb.run).__name__ == "NoopRun"
        wandb.finish()
        if disabled:
            wandb.teardown()


@pytest.fixture
def run_script(tmp_path):
    """``run_script("name.py", *args)`` runs ``tests/scripts/name.py`` in ``tmp_path`` (see module docstring)."""

    def _run(name: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        return run_python([SCRIPTS / name, *args], tmp_path, timeout=timeout, **env)

    return _run
