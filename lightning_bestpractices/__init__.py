"""lightning-bestpractices: training practices as tested PyTorch Lightning callbacks, mixins and recipes.

The public API is flat: ``from lightning_bestpractices import WeightInit, GradualUnfreezing, ...``.
Each practice lives in one module (a pure-torch functional core plus a thin Lightning shell).
"""

__all__: list[str] = []

# --- foundation: data, models, recipe runner ---------------------------------------------------------------
from ._logging import format_table, log_figure, log_table, run_dir  # noqa: E402
from .cli import BestPracticesCLI  # noqa: E402
from .data import DigitsDataModule, InMemoryDataModule, MoonsDataModule, TensorLoader, VisionDataModule  # noqa: E402
from .lr_logging import BufferedLRMonitor  # noqa: E402
from .models import MLP, SmallCNN  # noqa: E402
from .monitoring import RankParity, max_rank_difference  # noqa: E402
from .plots import DecisionBoundary, plot_decision_boundary  # noqa: E402
from .tasks import Classifier  # noqa: E402
from .wandb_offline import OfflineRun, find_offline_runs, read_offline_run  # noqa: E402

__all__ += [
    "BestPracticesCLI",
    "BufferedLRMonitor",
    "Classifier",
    "DecisionBoundary",
    "DigitsDataModule",
    "InMemoryDataModule",
    "MLP",
    "MoonsDataModule",
    "OfflineRun",
    "RankParity",
    "SmallCNN",
    "TensorLoader",
    "VisionDataModule",
    "find_offline_runs",
    "format_table",
    "log_figure",
    "log_table",
    "max_rank_difference",
    "plot_decision_boundary",
    "read_offline_run",
    "run_dir",
]

# --- initialization / normalization (issue 3) -----------------------------------------------------------
from .diagnostics import DepthDiagnostics, DepthStats, depth_statistics, plot_depth  # noqa: E402
from .initialization import (  # noqa: E402
    InitReport,
    LSUVReport,
    WeightInit,
    init_weights,
    lsuv_init,
)
from .normalization import (  # noqa: E402
    NORM_TYPES,
    FoldReport,
    FrozenBatchNorm,
    batchnorm_to_groupnorm,
    batchnorm_to_syncbn,
    fold_batchnorm,
    freeze_batchnorm,
    is_norm,
    no_decay_parameters,
    norm_types,
    param_groups,
    register_norm,
    unfreeze_batchnorm,
)

__all__ += [
    "DepthDiagnostics",
    "DepthStats",
    "depth_statistics",
    "plot_depth",
    "InitReport",
    "LSUVReport",
    "WeightInit",
    "init_weights",
    "lsuv_init",
    "fold_batchnorm",
    "FoldReport",
    "NORM_TYPES",
    "FrozenBatchNorm",
    "batchnorm_to_groupnorm",
    "batchnorm_to_syncbn",
    "freeze_batchnorm",
    "is_norm",
    "no_decay_parameters",
    "norm_types",
    "param_groups",
    "register_norm",
    "unfreeze_batchnorm",
]

# --- optimizers / schedules (issue 4) --------------------------------------------------------------------
from .optim import (  # noqa: E402
    OPTIMIZERS,
    SCHEDULES,
    GroupLRMonitor,
    Lamb,
    LRFindResult,
    OptimConfig,
    OptimizerMixin,
    ScheduleSpec,
    StepPlan,
    build_scheduler,
    count_optimizer_steps,
    create_optimizer,
    list_optimizers,
    list_schedules,
    lr_find,
    parse_duration,
    plan_from_trainer,
    suggest_lr,
)

__all__ += [
    "OPTIMIZERS",
    "SCHEDULES",
    "GroupLRMonitor",
    "Lamb",
    "LRFindResult",
    "OptimConfig",
    "OptimizerMixin",
    "ScheduleSpec",
    "StepPlan",
    "build_scheduler",
    "count_optimizer_steps",
    "create_optimizer",
    "list_optimizers",
    "list_schedules",
    "lr_find",
    "parse_duration",
    "plan_from_trainer",
    "suggest_lr",
]


# --- transfer learning (issue 5) -------------------------------------------------------------------------
from .finetuning import (  # noqa: E402
    FineTune,
    GradualUnfreezing,
    LayerGroup,
    LayerGroupsMixin,
    add_param_group,
    drop_frozen_parameters,
    fine_tune,
    freeze_group,
    group_index_of,
    group_parameters,
    layer_groups,
    scale_group_lr,
    unfreeze_group,
)

__all__ += [
    "FineTune",
    "GradualUnfreezing",
    "LayerGroup",
    "LayerGroupsMixin",
    "add_param_group",
    "drop_frozen_parameters",
    "fine_tune",
    "freeze_group",
    "group_index_of",
    "group_parameters",
    "layer_groups",
    "scale_group_lr",
    "unfreeze_group",
]

# --- MC dropout / uncertainty (issue 6) ------------------------------------------------------------------
from .uncertainty import (  # noqa: E402
    MCDropoutMixin,
    MCOutput,
    MCRegressionOutput,
    MCResult,
    calibration_metrics,
    find_split,
    find_stochastic_modules,
    mc_dropout_mode,
    mc_predict,
    register_stochastic,
    reliability_diagram,
    stochastic_registry,
    uncertainty_auroc,
    uncertainty_histogram,
    uncertainty_measures,
    unregister_stochastic,
)

__all__ += [
    "MCDropoutMixin",
    "MCOutput",
    "MCRegressionOutput",
    "MCResult",
    "calibration_metrics",
    "find_split",
    "find_stochastic_modules",
    "mc_dropout_mode",
    "mc_predict",
    "register_stochastic",
    "reliability_diagram",
    "stochastic_registry",
    "uncertainty_auroc",
    "uncertainty_histogram",
    "uncertainty_measures",
    "unregister_stochastic",
]


__version__ = "0.1.0"
