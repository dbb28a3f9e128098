"""Layer groups: split a model into ordered groups, from the input side to the head, and freeze/unfreeze them.

A layer group is a named list of submodule paths (``"backbone.layer3"``). Groups are kept as *names*, not module
objects, because freezing BatchNorm swaps modules (:func:`~lightning_bestpractices.normalization.freeze_batchnorm`)
and a checkpoint must map back onto the same structure. Parameters are looked up when they are needed.

What this adds over Lightning's ``BaseFinetuning.flatten_modules``/``freeze``: an ordered, named split that knows
where the head is (automatic for ``nn.Sequential`` and torchvision ResNets, or explicit by name/pattern), and
freezing that also switches BatchNorm to frozen statistics with the shared
:class:`~lightning_bestpractices.normalization.FrozenBatchNorm`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_bestpractices.errors import ArgumentError

from ..normalization import FrozenBatchNorm, freeze_batchnorm, is_norm, unfreeze_batchnorm

__all__ = [
    "LayerGroup",
    "LayerGroupsMixin",
    "layer_groups",
    "group_parameters",
    "freeze_group",
    "unfreeze_group",
]

GroupSpec = str | Sequence[str]


@dataclass(frozen=True)
class LayerGroup:
    """A named group of submodules, given by their qualified names relative to the root module."""

    name: str
    modules: tuple[str, ...] = field(default_factory=tuple)


class LayerGroupsMixin:
    """Mixin for a ``LightningModule`` (or any ``nn.Module``) that declares its own layer groups.

    Override :meth:`layer_groups` to return the groups from the input side to the head; each entry is a submodule,
    a list of submodules, a name/pattern (``"encoder.*"``) or a list of names/patterns. The last entry is the head
    unless the callback is given ``head=``.

    Examples:
        >>> class Net(LayerGroupsMixin, nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.stem, self.body, self.fc = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)
        ...     def layer_groups(self):
        ...         return [self.stem, "body", self.fc]
        >>> [g.name for g in layer_groups(Net())]
        ['stem', 'body', 'fc']
    """

    def layer_groups(self) -> list:  # pragma: no cover - documentation default, always overridden
        raise NotImplementedError("override `layer_groups()` to return the groups from input to head")


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _is_resnet(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("conv1", "bn1", "layer1", "fc")) and isinstance(
        module.fc, nn.Module
    )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _auto(module: nn.Module, prefix: str) -> list[LayerGroup]:
    """Automatic groups: ResNet stem/stages/fc, the parameterised children of a Sequential, or of a container."""
    if _is_resnet(module):
        stages = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(module, n)]
        groups = [LayerGroup(_join(prefix, "stem"), (_join(prefix, "conv1"), _join(prefix, "bn1")))]
        groups += [LayerGroup(_join(prefix, n), (_join(prefix, n),)) for n in stages]
        return groups + [LayerGroup(_join(prefix, "fc"), (_join(prefix, "fc"),))]
    children = [(n, c) for n, c in module.named_children() if _has_params(c)]
    if len(children) == 1 and not _is_leaf(children[0][1]):
        return _auto(children[0][1], _join(prefix, children[0][0]))
    if isinstance(module, nn.Sequential):  # one group per layer; a norm layer joins the layer before it
        groups: list[LayerGroup] = []
        for n, c in children:
            if groups and is_norm(c):
                groups[-1] = LayerGroup(groups[-1].name, (*groups[-1].modules, _join(prefix, n)))
            else:
                groups.append(LayerGroup(_join(prefix, n), (_join(prefix, n),)))
        return groups
    groups = []
    for n, c in children:
        if isinstance(c, nn.Sequential) or _is_resnet(c):
            groups += _auto(c, _join(prefix, n))
        else:
            groups.append(LayerGroup(_join(prefix, n), (_join(prefix, n),)))
    return groups


def _readable(groups: list[LayerGroup]) -> list[LayerGroup]:
    """Automatic names without the doubled segments of look-through wrappers (a task's ``net`` holding a model
    whose layers are in its own ``net``: ``net.net.0`` is shown as ``net.0``); module paths are unchanged."""

    def collapse(name: str) -> str:
        parts: list[str] = []
        for p in name.split("."):
            if not parts or parts[-1] != p:
                parts.append(p)
        return ".".join(parts)

    names = [collapse(g.name) for g in groups]
    if len(set(names)) != len(names):
        return groups
    return [LayerGroup(n, g.modules) for n, g in zip(names, groups)]


def _match(root: nn.Module, pattern: str, what: str) -> list[str]:
    names = [n for n, _ in root.named_modules() if n]
    if pattern in names:
        return [pattern]
    hits = fnmatch.filter(names, pattern)
    if not hits:
        top = [n for n, _ in root.named_children()]
        raise ArgumentError(
            f"`{what}` entry {pattern!r} matches no submodule of {type(root).__name__}; top-level modules: {top}"
        )
    return _outermost(hits)


def _outermost(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]


def _normalize(root: nn.Module, entry, what: str) -> LayerGroup:
    by_id = {id(m): n for n, m in root.named_modules() if n}
    items = [entry] if isinstance(entry, (str, nn.Module)) else list(entry)
    if not items:
        raise ArgumentError(f"`{what}` has an empty group")
    names: list[str] = []
    for item in items:
        if isinstance(item, nn.Module):
            if id(item) not in by_id:
                raise ArgumentError(
                    f"`{what}` entry {type(item).__name__} is not a submodule of {type(root).__name__}"
                )
            names.append(by_id[id(item)])
        elif isinstance(item, str):
            names += _match(root, item, what)
        else:
            raise ArgumentError(f"`{what}` entries must be module names, patterns or modules, got {item!r}")
    label = items[0] if len(items) == 1 and isinstance(items[0], str) else "+".join(names)
    return LayerGroup(label, tuple(_outermost(names)))


def _inside(name: str, others: Iterable[str]) -> bool:
    return any(name == o or name.startswith(o + ".") for o in others)


def layer_groups(
    module: nn.Module, groups: Sequence[GroupSpec] | None = None, head: GroupSpec | None = None
) -> list[LayerGroup]:
    """Split ``module`` into ordered layer groups, input side first; the last group is the head.

    Args:
        module: the model (a LightningModule works too).
        groups: ``None`` for automatic groups (a :class:`LayerGroupsMixin`'s ``layer_groups()``; else the
            parameterised children of an ``nn.Sequential``, a norm layer joining the layer before it; the stem,
            ``layer1..4`` and ``fc`` of a ResNet; the children of a container, expanding Sequential/ResNet
            children; a wrapper with one parameterised child is looked through), or a list whose entries are module
            names or ``fnmatch`` patterns (``"features.*"``) or lists of them, input side first.
        head: the head's name/pattern(s). ``None``: the last group. When given, it is removed from the other
            groups and appended as the last group.

    Parameters that belong to no group join the first (input-side) group, so nothing is left trainable by
    accident. A parameter shared by two groups belongs to the one nearer the head.

    Raises:
        lightning_bestpractices.errors.ArgumentError: a name or pattern matches no submodule, the head cannot be found, or fewer than two groups.

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [(g.name, g.modules) for g in layer_groups(net)]
        [('0', ('0',)), ('2', ('2',)), ('4', ('4',))]
        >>> [g.name for g in layer_groups(net, groups=[["0", "2"]], head="4")]
        ['0+2', '4']
        >>> wrapped = nn.Module(); wrapped.net = nn.Module(); wrapped.net.net = net      # a task around a model
        >>> [(g.name, g.modules) for g in layer_groups(wrapped)][0]
        ('net.0', ('net.net.0',))
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if groups is None:
        declared = getattr(module, "layer_groups", None)
        if callable(declared) and not isinstance(declared, nn.Module):
            found = [_normalize(module, e, "layer_groups()") for e in declared()]
        else:
            found = _readable(_auto(module, ""))
    else:
        if isinstance(groups, str) or not isinstance(groups, Sequence):
            raise ArgumentError(f"`groups` must be a list of module names/patterns, got {groups!r}")
        found = [_normalize(module, e, "groups") for e in groups]
    if head is not None:
        try:
            head_group = _normalize(module, head, "head")
        except ValueError as err:
            raise ArgumentError(f"`head` {head!r} cannot be found: {err}") from None
        found = [
            LayerGroup(g.name, tuple(n for n in g.modules if not _inside(n, head_group.modules)))
            for g in found
        ]
        found = [g for g in found if g.modules] + [head_group]
    if len(found) < 2:
        raise ArgumentError(
            f"need at least two layer groups (a body and a head) in {type(module).__name__}, found "
            f"{[g.name for g in found]}; pass `groups=` and `head=` explicitly"
        )
    return found


def group_parameters(module: nn.Module, groups: Sequence[LayerGroup]) -> list[list[nn.Parameter]]:
    """The parameters of each group (same order as ``groups``), unique, the head claiming shared ones first.

    Parameters in no group are added to the first group. Looked up live, so call it after module swaps.

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [len(ps) for ps in group_parameters(net, layer_groups(net))]
        [2, 2]
    """
    seen: set[int] = set()
    out: list[list[nn.Parameter]] = [[] for _ in groups]
    for i in reversed(range(len(groups))):
        for name in groups[i].modules:
            for p in module.get_submodule(name).parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out[i].append(p)
    out[0] += [p for p in module.parameters() if id(p) not in seen]
    return out


def _swap(root: nn.Module, name: str, fn) -> None:
    sub = root.get_submodule(name)
    new = fn(sub)
    if new is not sub:
        parent, _, leaf = name.rpartition(".")
        setattr(root.get_submodule(parent) if parent else root, leaf, new)


def freeze_group(module: nn.Module, group: LayerGroup, *, train_bn_affine: bool = False) -> None:
    """Freeze a group in place: ``requires_grad=False``, BatchNorm uses and keeps its running statistics.

    BatchNorm layers become :class:`~lightning_bestpractices.normalization.FrozenBatchNorm` (same Parameter and
    buffer objects, same state-dict keys). With ``train_bn_affine=True`` their ``weight``/``bias`` stay trainable.

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        >>> freeze_group(net, LayerGroup("body", ("0", "1")))
        >>> type(net[1]).__name__, net[0].weight.requires_grad, net[2].weight.requires_grad
        ('FrozenBatchNorm', False, True)
    """
    for name in group.modules:
        _swap(module, name, lambda m: freeze_batchnorm(m, train_affine=train_bn_affine))
        for sub in module.get_submodule(name).modules():
            keep = train_bn_affine and isinstance(sub, FrozenBatchNorm)
            for p in sub.parameters(recurse=False):
                p.requires_grad_(keep)


def unfreeze_group(module: nn.Module, group: LayerGroup) -> None:
    """Undo :func:`freeze_group`: BatchNorm goes back to its class, every parameter requires grad."""
    for name in group.modules:
        _swap(module, name, unfreeze_batchnorm)
        for p in module.get_submodule(name).parameters():
            p.requires_grad_(True)


def is_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a (trainable-statistics) BatchNorm layer."""
    return isinstance(module, _BatchNorm)
