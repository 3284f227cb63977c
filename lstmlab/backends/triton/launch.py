"""Compiling and launching the Triton kernels: compiled on CUDA, interpreted under
`TRITON_INTERPRET=1`, the choice made at each launch.

`triton.jit` picks compilation or Triton's interpreter once, when a kernel is
decorated, from the environment at that moment. lstmlab reads `TRITON_INTERPRET`
at each call instead (a module may be built before the variable is set), so each
kernel is a `Kernel` that holds the plain function and makes the compiled or the
interpreted form of it on first use of each. For that to work the kernels call
only Triton's builtins (`tl.load`, `tl.exp`, `tl.where`, ...), never functions of
`triton.language.standard` such as `tl.sigmoid`: those are decorated once, in the
mode triton was imported in, and the other mode cannot call them.

This module imports triton; the backend loads it only once `backend.import_error`
finds that triton imports.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import triton
from triton.runtime.jit import JITFunction

# the most elements of a (B, H) step one program handles; at most 7 block sizes compile
MAX_BLOCK = 1024


def interpreting() -> bool:
    """Whether Triton's interpreter runs the kernels (TRITON_INTERPRET set, read now)."""
    knobs = getattr(triton, "knobs", None)  # triton >= 3.4
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


class Kernel:
    """A Triton kernel launched as `kernel[grid](*args)`, compiled or interpreted
    according to `interpreting()` at the launch."""

    def __init__(self, fn: Callable[..., None], **options: Any) -> None:
        self.fn = fn
        self.options = options
        self._forms: dict[bool, Any] = {}

    def form(self, interpret: bool) -> Any:
        """The interpreted (InterpretedFunction) or compiled (JITFunction) kernel."""
        if interpret not in self._forms:
            if interpret:
                from triton.runtime.interpreter import InterpretedFunction

                self._forms[interpret] = InterpretedFunction(self.fn, **self.options)
            else:
                from triton.runtime.jit import JITFunction

                self._forms[interpret] = JITFunction(self.fn, **self.options)
        return self._forms[interpret]

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., Any]:
        return self.form(interpreting())[grid]


def kernel(**options: Any) -> Callable[[Callable[..., None]], Kernel]:
    """Decorator: `@kernel(do_not_specialize=["t"])` makes a `Kernel` (options as triton.jit's)."""
    return lambda fn: Kernel(fn, **options)


def _add(a, b):  # no annotations: Triton would read them as argument types
    return a + b


# tl.reduce's combine function for a sum, made a JITFunction whatever mode triton was imported
# in: a compiled kernel inlines it, the interpreter calls its plain function (`.fn`). (tl.sum
# is a function of triton.language.standard, which the other mode cannot call.)
add_combine = JITFunction(_add)


def block(n: int) -> int:
    """Block size for n elements: the next power of two, at least 16, at most MAX_BLOCK."""
    return min(max(triton.next_power_of_2(n), 16), MAX_BLOCK)


def launch(k: Kernel, n: int, *args: Any, **constexprs: Any) -> None:
    """Run k over n elements (one step's B*H), in programs of `block(n)` elements."""
    if n == 0:
        return
    size = block(n)
    k[(triton.cdiv(n, size),)](*args, n, BLOCK=size, **constexprs)


def launch_rows(k: Kernel, rows: int, width: int, *args: Any, **constexprs: Any) -> None:
    """Run k with one program per row of `width` elements (a kernel that reduces over a row:
    BLOCK covers the row, whatever its size); n = rows * width, as `launch` passes it."""
    if rows * width == 0:
        return
    k[(rows,)](*args, rows * width, BLOCK=max(triton.next_power_of_2(width), 16), **constexprs)


def keep_flags(lengths: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(lengths on like's device as int32, HAS_LENGTHS); a dummy tensor when lengths is None."""
    if lengths is None:
        return like.new_zeros(1, dtype=torch.int32), False
    return lengths.to(device=like.device, dtype=torch.int32).contiguous(), True


def float32_copy(t: torch.Tensor) -> torch.Tensor:
    """A fresh contiguous float32 copy of t (a buffer a kernel may update in place)."""
    return torch.empty(t.shape, dtype=torch.float32, device=t.device).copy_(t)


def product_into(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    """out = h w^T (+ bias), in place: a step's recurrent product, written into a preallocated buffer."""
    if bias is None:
        torch.mm(h, w.t(), out=out)
    else:
        torch.addmm(bias, h, w.t(), out=out)


def zoneout_flag(d: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, int]:
    """d of (Z1) as the kernels read it, and their ZONE flag: 0 no zoneout (d a dummy tensor),
    1 one value per unit and step (d a contiguous (T, B, S)), 2 one value for all (an expanded
    constant, as at evaluation: each step's kernel reads d[t]'s first element)."""
    if d is None:
        return like.new_empty(1), 0
    if all(stride == 0 for stride in d.stride()):
        return d, 2
    return d.contiguous(), 1


def recurrent_flag(m: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """m of (D1) (B, S_h) contiguous, and the kernels' RD flag; a dummy tensor when m is None."""
    if m is None:
        return like.new_empty(1), False
    return m.contiguous(), True
