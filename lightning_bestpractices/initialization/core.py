"""``init_weights``: activation-aware initialization with overrides and a readable report.

What this adds over calling ``torch.nn.init`` yourself (which does all the arithmetic here): the scheme for each
layer is chosen from the activation that *actually follows it when the model runs* (functional activations in
``forward`` included, see :mod:`.activations`), every choice is listed in a report the user can read, and
overrides by type, name pattern or module object are validated (a pattern that matches nothing is an error).
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_bestpractices.errors import ArgumentError

from .._logging import format_table
from ..normalization import FrozenBatchNorm, is_norm
from ..tracing import Trace, trace_model
from .activations import Activation, find_activations_by_order, find_activations_traced, gain
from .residual import zero_residual_norms

__all__ = ["init_weights", "InitReport", "LayerInit", "SCHEMES", "WEIGHT_LAYERS"]

#: Scheme names ``init_weights`` and overrides accept. ``"auto"`` picks per layer; ``"keep"`` leaves a layer as is.
SCHEMES = ("auto", "kaiming", "xavier", "lecun", "orthogonal", "trunc_normal", "normal", "keep")
#: Layers whose weight gets an activation-dependent scheme.
WEIGHT_LAYERS: tuple[type, ...] = (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)  # fmt: skip
Override = str | Callable[[nn.Module], Any]


@dataclass
class LayerInit:
    """One row of the report: what ``init_weights`` did to one parameter-owning layer (or RNN weight)."""

    name: str
    kind: str
    activation: str
    scheme: str
    fan_in: (
        int | None
    )  # None where it does not apply (norms, kept layers): W&B tables need one type per column
    fan_out: int | None
    weight_std: float | None

    def row(self) -> list:
        return [
            self.name,
            self.kind,
            self.activation,
            self.scheme,
            self.fan_in,
            self.fan_out,
            self.weight_std,
        ]


@dataclass
class InitReport:
    """The table a user checks after ``init_weights``/``WeightInit``: layer, activation found, scheme, fan."""

    layers: list[LayerInit] = field(default_factory=list)
    method: str = "execution trace"
    columns: ClassVar[list[str]] = [
        "layer",
        "type",
        "activation",
        "scheme",
        "fan_in",
        "fan_out",
        "weight_std",
    ]

    @property
    def rows(self) -> list[list]:
        return [layer.row() for layer in self.layers]

    def __getitem__(self, name: str) -> LayerInit:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __str__(self) -> str:
        rows = [["-" if v is None else v for v in row] for row in self.rows]
        return f"init_weights ({self.method}):\n" + format_table(self.columns, rows)


def _fans(w: torch.Tensor) -> tuple[int, int]:
    rf = math.prod(w.shape[2:]) if w.dim() > 2 else 1
    return w.shape[1] * rf, w.shape[0] * rf


def _validate_overrides(model: nn.Module, overrides: Mapping | None, names: list[str]) -> dict:
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ArgumentError(f"`overrides` must be a mapping, got {type(overrides).__name__}")
    modules = {id(m) for m in model.modules()}
    for key, value in overrides.items():
        if isinstance(value, str):
            if value not in SCHEMES:
                raise ArgumentError(
                    f"`overrides` value for {key!r} must be one of {SCHEMES} or a callable, got {value!r}"
                )
        elif not callable(value):
            raise ArgumentError(
                f"`overrides` value for {key!r} must be a scheme name or a callable, got {value!r}"
            )
        if isinstance(key, str):
            if not any(fnmatch.fnmatchcase(n, key) for n in names):
                raise ArgumentError(
                    f"`overrides` name pattern {key!r} matches no layer of {type(model).__name__}"
                )
        elif isinstance(key, nn.Module):
            if id(key) not in modules:
                raise ArgumentError(f"`overrides` module {type(key).__name__} is not part of the model")
        elif not isinstance(key, type):
            raise ArgumentError(f"`overrides` keys must be a type, a name pattern or a module, got {key!r}")
    return dict(overrides)


def _resolve(overrides: dict, name: str, mod: nn.Module, default: str) -> tuple[Override, str]:
    for key, value in overrides.items():  # 1. this very module
        if isinstance(key, nn.Module) and key is mod:
            return value, "module"
    for key, value in overrides.items():  # 2. a name pattern
        if isinstance(key, str) and fnmatch.fnmatchcase(name, key):
            return value, "name"
    types = [(k, v) for k, v in overrides.items() if isinstance(k, type) and isinstance(mod, k)]
    if types:  # 3. a type; the most specific class wins
        types.sort(key=lambda kv: type(mod).__mro__.index(kv[0]) if kv[0] in type(mod).__mro__ else 99)
        return types[0][1], "type"
    return default, ""


def _apply(w: torch.Tensor, scheme: str, act: Activation, cfg: dict, chunks: int = 1) -> None:
    gen = cfg["generator"]
    for part in w.chunk(chunks, 0) if chunks > 1 else (w,):
        uniform = cfg["distribution"] == "uniform"
        if scheme == "kaiming":
            fn = nn.init.kaiming_uniform_ if uniform else nn.init.kaiming_normal_
            fn(part, a=act.negative_slope, mode="fan_in", nonlinearity=act.nonlinearity, generator=gen)
        elif scheme == "xavier":
            g = gain(act) if act.family == "saturating" else 1.0
            (nn.init.xavier_uniform_ if uniform else nn.init.xavier_normal_)(part, gain=g, generator=gen)
        elif scheme == "lecun":
            fn = nn.init.kaiming_uniform_ if uniform else nn.init.kaiming_normal_
            fn(part, mode="fan_in", nonlinearity="linear", generator=gen)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(part, gain=gain(act), generator=gen)
        elif scheme == "trunc_normal":
            s = cfg["trunc_std"]
            nn.init.trunc_normal_(part, std=s, a=-2 * s, b=2 * s, generator=gen)
        elif scheme == "normal":
            nn.init.normal_(part, std=cfg["normal_std"], generator=gen)
        else:  # pragma: no cover - validated before
            raise AssertionError(scheme)


def _auto_scheme(act: Activation) -> str:
    return {"relu": "kaiming", "selu": "lecun", "attention": "trunc_normal"}.get(act.family, "xavier")


def init_weights(
    module: nn.Module,
    scheme: str = "auto",
    *,
    example_input: Any = None,
    overrides: Mapping[type | str | nn.Module, Override] | None = None,
    distribution: str = "normal",
    zero_init_residual: bool = False,
    normal_std: float = 0.01,
    trunc_std: float = 0.02,
    generator: torch.Generator | None = None,
) -> InitReport:
    """Initialize every layer of ``module`` in place and return a report of what was done.

    ``scheme="auto"`` picks per layer from the activation that follows it in the forward pass:
    Kaiming (fan-in, with that activation's gain) for ReLU, LeakyReLU (its slope), GELU, SiLU, Mish and ELU;
    Xavier for tanh (gain 5/3), sigmoid and layers with no activation; LeCun normal (std ``1/sqrt(fan_in)``) for
    SELU; truncated normal (std ``trunc_std``, cut at 2 std) for embeddings and attention projections (Linears
    feeding ``scaled_dot_product_attention``, ``nn.MultiheadAttention``); orthogonal for recurrent ``weight_hh``
    (per gate; ``weight_ih`` gets Xavier per gate). Any other scheme name is applied to every weight layer
    (``"kaiming"``/``"orthogonal"`` still use the found activation's gain; ``"xavier"`` uses gain 1 except for
    tanh/sigmoid; ``"normal"`` is ``N(0, normal_std)``). Biases start at 0, norm layers at weight 1 / bias 0
    (BatchNorm statistics are reset; a :class:`FrozenBatchNorm` is left alone). Parameter objects are kept.

    The activation is found by running the model once on ``example_input`` (or ``module.example_input_array``)
    in eval mode without gradients; without one, the next activation *module* in registration order is used
    (a warning says so; functional activations are then missed).

    Args:
        module: the model.
        scheme: one of :data:`SCHEMES`.
        example_input: an input for ``module(x)`` (``module(*x)`` for a tuple, ``module(**x)`` for a dict).
        overrides: ``{nn.Embedding: "normal", "head.*": "xavier", model.fc: my_fn}``: by module object first,
            then name pattern (``fnmatch`` on the qualified name), then type (most specific). Values are scheme
            names or callables ``fn(module)`` that initialize the module themselves.
        distribution: ``"normal"`` or ``"uniform"`` for Kaiming/Xavier/LeCun (same variance either way).
        zero_init_residual: zero the gain of the last norm layer in each residual branch (the branch with more
            Conv/Linear layers at an ``a + b``), so every residual block starts as the identity. Needs the trace.
        normal_std, trunc_std: the std of ``"normal"`` and ``"trunc_normal"``.
        generator: a ``torch.Generator`` for reproducible initialization without touching the global RNG.

    Examples:
        >>> import torch.nn.functional as F
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 1)
        ...     def forward(self, x):
        ...         return self.c(torch.tanh(self.b(F.gelu(self.a(x)))))
        >>> report = init_weights(Net(), example_input=torch.randn(2, 4))
        >>> [(r.name, r.activation, r.scheme) for r in report]
        [('a', 'gelu', 'kaiming'), ('b', 'tanh', 'xavier'), ('c', 'none', 'xavier')]
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if scheme not in SCHEMES:
        raise ArgumentError(f"`scheme` must be one of {SCHEMES}, got {scheme!r}")
    if distribution not in ("normal", "uniform"):
        raise ArgumentError(f"`distribution` must be 'normal' or 'uniform', got {distribution!r}")
    for arg, value in (("normal_std", normal_std), ("trunc_std", trunc_std)):
        if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise ArgumentError(f"`{arg}` must be a finite number > 0, got {value!r}")
    for n, p in module.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ArgumentError(f"parameter {n!r} is uninitialized (lazy module): run one forward pass first")

    targets: list[tuple[str, nn.Module]] = []
    inside_mha: set[int] = set()
    for name, mod in module.named_modules():
        if id(mod) in inside_mha:
            continue
        if isinstance(mod, nn.MultiheadAttention):
            inside_mha.update(id(m) for m in mod.modules() if m is not mod)
        if list(mod.parameters(recurse=False)) or isinstance(mod, nn.MultiheadAttention):
            targets.append((name, mod))
    overrides = _validate_overrides(module, overrides, [n for n, _ in targets])
    cfg = {
        "distribution": distribution,
        "normal_std": normal_std,
        "trunc_std": trunc_std,
        "generator": generator,
    }

    layers = [m for _, m in targets if isinstance(m, WEIGHT_LAYERS)]
    if example_input is None:
        example_input = getattr(module, "example_input_array", None)
    trace: Trace | None = None
    if example_input is not None:
        trace = _trace_eval(module, example_input)
        acts = find_activations_traced(trace, layers)
        method = "execution trace"
    else:
        if zero_init_residual:
            raise ArgumentError(
                "`zero_init_residual=True` needs `example_input` (the residual adds are found by tracing)"
            )
        needs_act = scheme in ("auto", "kaiming", "xavier", "orthogonal") and layers
        if needs_act:
            warnings.warn(
                "init_weights got no `example_input`: activations are taken from the next activation module in "
                "registration order (functional activations in forward() are not seen)",
                stacklevel=2,
            )
        acts = find_activations_by_order(module, layers, is_norm)
        method = "registration order"

    report = InitReport(method=method)
    with torch.no_grad():
        for name, mod in targets:
            chosen, _ = _resolve(overrides, name, mod, scheme)
            report.layers.extend(_init_module(name, mod, chosen, acts.get(id(mod), Activation("none")), cfg))
        if zero_init_residual:
            assert trace is not None
            for norm_name in zero_residual_norms(module, trace):
                row = report[norm_name]
                module.get_submodule(norm_name).weight.zero_()
                row.scheme = "zeros (residual)"
    return report


def _trace_eval(module: nn.Module, example_input: Any) -> Trace:
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        return trace_model(module, example_input)
    except (RuntimeError, TypeError, ValueError) as err:
        shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else type(example_input)
        raise ArgumentError(
            f"`example_input` ({shape}) does not run through {type(module).__name__}: {err}"
        ) from err
    finally:
        for m, mode in modes.items():
            m.training = mode


def _std(w: torch.Tensor) -> float:
    return float(w.float().std()) if w.numel() > 1 else float(w.float().abs().mean())


def _init_module(name: str, mod: nn.Module, chosen: Override, act: Activation, cfg: dict) -> list[LayerInit]:
    kind = type(mod).__name__
    if callable(chosen) and not isinstance(chosen, str):
        chosen(mod)
        w = getattr(mod, "weight", None)
        std = _std(w) if isinstance(w, torch.Tensor) else None
        return [
            LayerInit(name, kind, str(act), f"custom: {getattr(chosen, '__name__', 'fn')}", None, None, std)
        ]
    if chosen == "keep":
        return [LayerInit(name, kind, str(act), "keep", None, None, None)]

    if isinstance(mod, WEIGHT_LAYERS):
        s = _auto_scheme(act) if chosen == "auto" else chosen
        _apply(mod.weight, s, act, cfg)
        if mod.bias is not None:
            mod.bias.zero_()
        fi, fo = _fans(mod.weight)
        return [LayerInit(name, kind, str(act), s, fi, fo, _std(mod.weight))]
    if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
        s = "trunc_normal" if chosen == "auto" else chosen
        _apply(mod.weight, s, Activation("none"), cfg)
        if getattr(mod, "padding_idx", None) is not None:
            mod.weight[mod.padding_idx].zero_()
        return [LayerInit(name, kind, "-", s, None, mod.weight.shape[1], _std(mod.weight))]
    if isinstance(mod, nn.RNNBase):
        rows = []
        gates = {"LSTM": 4, "GRU": 3}.get(mod.mode, 1)
        tanh = Activation("tanh" if mod.mode != "RNN_RELU" else "relu")
        for pname, p in mod.named_parameters(recurse=False):
            if pname.startswith("bias"):
                p.zero_()
                continue
            if chosen != "auto":
                s = chosen
            else:
                s = "orthogonal" if pname.startswith("weight_hh") else "xavier"
            a = Activation("none") if s == "orthogonal" else tanh
            _apply(p, s, a, cfg, chunks=gates if not pname.startswith("weight_hr") else 1)
            fi, fo = _fans(p.chunk(gates, 0)[0] if gates > 1 else p)
            rows.append(LayerInit(f"{name}.{pname}", kind, "recurrent", s, fi, fo, _std(p)))
        return rows
    if isinstance(mod, nn.MultiheadAttention):
        s = "trunc_normal" if chosen == "auto" else chosen
        rows = []
        for pname, p in mod.named_parameters():
            if "bias" in pname.split(".")[-1] and pname not in ("bias_k", "bias_v"):
                p.zero_()
            elif pname in ("bias_k", "bias_v"):
                nn.init.xavier_normal_(p, generator=cfg["generator"])
            else:
                _apply(p, s, Activation("attention"), cfg)
                fi, fo = _fans(p)
                rows.append(LayerInit(f"{name}.{pname}", kind, "attention", s, fi, fo, _std(p)))
        return rows
    if is_norm(mod):
        if isinstance(mod, FrozenBatchNorm):
            return [LayerInit(name, kind, "-", "keep (frozen)", None, None, None)]
        for pname, p in mod.named_parameters(recurse=False):
            (p.zero_() if pname == "bias" else p.fill_(1.0))
        if isinstance(mod, _BatchNorm) and mod.track_running_stats:
            mod.reset_running_stats()
        return [LayerInit(name, kind, "-", "ones/zeros", None, None, None)]
    return [LayerInit(name, kind, "-", "keep (unknown type)", None, None, None)]
