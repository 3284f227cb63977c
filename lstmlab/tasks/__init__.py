"""Sequence tasks, by name: pure, seeded generators with their loss, metrics,
memoryless baseline and success criterion. The interface is `lstmlab.tasks.base`.

    >>> task = get("adding", seq_len=50)
    >>> batch = task.train_batch(step=0, seed=0)
    >>> tuple(batch.inputs.shape), task.baseline
    ((50, 64, 2), 0.16666666666666666)

A new task is one entry in `_REGISTRY`: its name, "module:Class" and fixed options.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from lstmlab.errors import InvalidArgument
from lstmlab.tasks.base import Batch, SupervisedTask, Task, eval_rng, train_rng

# name -> ("module:Class", fixed keyword options, one-line description); imported lazily
_REGISTRY: dict[str, tuple[str, dict[str, Any], str]] = {
    "adding": ("lstmlab.tasks.adding:Adding", {}, "adding problem, Arjovsky et al. 2016 (MSE)"),
    "adding-1997": ("lstmlab.tasks.adding:Adding1997", {}, "adding problem, Hochreiter & Schmidhuber 1997 exp. 4"),
    "copy": ("lstmlab.tasks.copy:CopyMemory", {}, "copy memory, Arjovsky et al. 2016"),
    "temporal-order": ("lstmlab.tasks.temporal_order:TemporalOrder", {"relevant": 2}, "temporal order, 1997 exp. 6a"),
    "temporal-order-3": ("lstmlab.tasks.temporal_order:TemporalOrder", {"relevant": 3}, "temporal order, 1997 exp. 6b"),
    "reber": ("lstmlab.tasks.reber:EmbeddedReber", {}, "embedded Reber grammar, 1997 exp. 1"),
    "reber-continual": ("lstmlab.tasks.reber:ContinualReber", {}, "continual embedded Reber, Gers et al. 2000"),
    "long-lag": ("lstmlab.tasks.long_lag:LongLag", {}, "noise-free long-lag sequences, 1997 exp. 2a"),
    "charlm": ("lstmlab.charlm.task:CharLM", {}, "character-level language model on any text (char-rnn)"),
}


def names() -> tuple[str, ...]:
    """Task names `get` accepts."""
    return tuple(_REGISTRY)


def describe(name: str) -> str:
    """One-line description of task `name`."""
    return _REGISTRY[_check_name(name)][2]


def _check_name(name: Any) -> str:
    if name not in _REGISTRY:
        raise InvalidArgument("tasks", "name", f"must be one of {', '.join(_REGISTRY)}; got {name!r}")
    return name


def task_class(name: str) -> type[Task]:
    """The class that implements task `name` (imports its module)."""
    module, cls = _REGISTRY[_check_name(name)][0].split(":")
    return getattr(importlib.import_module(module), cls)


def option_names(name: str) -> tuple[str, ...]:
    """The keyword options task `name` accepts."""
    fixed = _REGISTRY[_check_name(name)][1]
    params = inspect.signature(task_class(name).__init__).parameters
    return tuple(p for p in params if p != "self" and p not in fixed and params[p].kind == inspect.Parameter.KEYWORD_ONLY)


def get(name: str, **options: Any) -> Task:
    """Task `name` built with keyword `options`; an option it does not take is an error."""
    cls = task_class(name)
    accepted = option_names(name)
    for key in options:
        if key not in accepted:
            raise InvalidArgument("tasks", key, f"does not apply to task {name!r}; its options are {', '.join(accepted)}")
    task = cls(**_REGISTRY[name][1], **options)
    task.name = name
    task._options = dict(options)
    return task


def option_defaults(name: str) -> dict[str, Any]:
    """Task `name`'s keyword options with their default values."""
    params = inspect.signature(task_class(name).__init__).parameters
    return {option: params[option].default for option in option_names(name)}


__all__ = [
    "Batch",
    "SupervisedTask",
    "Task",
    "describe",
    "eval_rng",
    "get",
    "names",
    "option_defaults",
    "option_names",
    "task_class",
    "train_rng",
]
