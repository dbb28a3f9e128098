"""The package's namespaces load lazily, and each practice's functional core imports without Lightning.

Each check runs in a fresh interpreter: in this pytest process Lightning is long loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

HEAVY = ("lightning", "pytorch_lightning", "torchmetrics", "wandb", "matplotlib")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import lightning_bestpractices.normalization",
        # every functional core at once (each interpreter costs a torch import): none of them may load Lightning
        "import lightning_bestpractices\n"
        "from lightning_bestpractices import fold_batchnorm, init_weights, lsuv_init, no_decay_parameters\n"
        "from lightning_bestpractices.normalization import param_groups, FrozenBatchNorm\n"
        "from lightning_bestpractices.optim.factory import create_optimizer\n"
        "import lightning_bestpractices.optim.curves, lightning_bestpractices.tracing\n"
        "from lightning_bestpractices.uncertainty.functional import mc_predict\n"
        "import lightning_bestpractices.health.functional\n"
        "from lightning_bestpractices.regularization import weight_penalty, max_norm_, DropPath, checkpoint_blocks",
    ],
    ids=["normalization", "all-cores"],
)
def test_functional_cores_import_without_lightning(statement):
    assert _loaded_after(statement) == [], f"`{statement}` imported heavy packages"


def test_the_shells_still_load_lightning_when_used():
    assert "lightning" in _loaded_after("from lightning_bestpractices import WeightInit")


def test_the_flat_namespace_resolves_every_public_name():
    import lightning_bestpractices as lbp

    assert len(lbp.__all__) == len(set(lbp.__all__)), "a name is exported twice"
    for name in lbp.__all__:
        assert getattr(lbp, name) is not None, name
    assert set(lbp.__all__) <= set(dir(lbp))
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        lbp.NoSuchThing  # noqa: B018
