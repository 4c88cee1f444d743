"""Catch host reads of tensor values: the syncs a CUDA hot path must not make.

`HostReads()` is a context in which reading a tensor's value on the host is recorded (or
raises, `strict=True`): below Python, every `aten._local_scalar_dense` (what `item`,
`int()`, `float()`, `bool()` and `if tensor:` end in) through a TorchDispatchMode; above
it, `Tensor.item / tolist / numpy / cpu / __bool__ / __int__ / __float__ / __index__`.
On CPU tensors it finds the reads CUDA would have to wait for, without a GPU.

Two things are not reads of device data and are let through:
- values drawn from a CPU torch.Generator (Mixup draws lambda, the box and the CPU
  permutation on the host on purpose): the outputs of any op given a CPU generator, and
  of any op whose tensor inputs are all such values;
- what Triton's interpreter does to run a kernel on CPU tensors (on a GPU it is the
  device's work): `kernel_launches` runs launches outside the watch, or stubs them.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

READ_METHODS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")


class HostRead(RuntimeError):
    """A tensor's value was read on the host inside HostReads(strict=True)."""


class HostReads(TorchDispatchMode):
    """Record host reads in `self.reads` (names of what read); raise at once if strict."""

    def __init__(self, strict: bool = False):
        super().__init__()
        self.strict = strict
        self.reads: list[str] = []
        # id -> tensor, weakly: a WeakSet would compare tensors with ==, itself a read.
        self._host_values = weakref.WeakValueDictionary()
        self._suspended = 0
        self._saved: dict[str, object] = {}

    def __enter__(self):
        for name in READ_METHODS:
            self._saved[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._watched(name, self._saved[name]))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, method in self._saved.items():
            setattr(torch.Tensor, name, method)
        return super().__exit__(*exc)

    @contextlib.contextmanager
    def suspended(self):
        """Run something that is not the host path (a kernel, in the interpreter) unwatched."""
        self._suspended += 1
        try:
            with _disable_current_modes():
                yield
        finally:
            self._suspended -= 1

    def _is_host_value(self, t) -> bool:
        return self._host_values.get(id(t)) is t

    def _record(self, what: str) -> None:
        self.reads.append(what)
        if self.strict:
            raise HostRead(f"host read of a tensor value: {what}")

    def _watched(self, name: str, method):
        guard = self

        def watched(t, *args, **kwargs):
            if not guard._suspended and not guard._is_host_value(t):
                guard._record(f"Tensor.{name}")
            return method(t, *args, **kwargs)

        return watched

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        scalar_read = func is torch.ops.aten._local_scalar_dense.default
        if scalar_read and not self._suspended and not self._is_host_value(args[0]):
            self._record("aten._local_scalar_dense")
        out = func(*args, **kwargs)
        generator = kwargs.get("generator")
        drawn = isinstance(generator, torch.Generator) and generator.device.type == "cpu"
        inputs = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if _is_tensor(t)]
        # Computed from host draws alone (Mixup's Beta sampler): host values too. A 0-d
        # CPU tensor beside them is a Python number torch wrapped (torch.where(m, v, 1.0)).
        host = [self._is_host_value(t) for t in inputs]
        derived = any(host) and all(
            h or (t.ndim == 0 and t.device.type == "cpu") for t, h in zip(inputs, host, strict=True)
        )
        if drawn or derived:
            for t in torch.utils._pytree.tree_leaves(out):
                if _is_tensor(t):
                    self._host_values[id(t)] = t
        return out


def _is_tensor(t) -> bool:
    return isinstance(t, torch.Tensor)


@contextlib.contextmanager
def kernel_launches(reads: HostReads | None = None, *, stub: bool = False):
    """Triton launches either stubbed (nothing runs: host cost alone) or run outside the
    watch of `reads`."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    saved = {cls: cls.run for cls in (JITFunction, InterpretedFunction)}

    def wrap(run):
        def launch(self, *args, **kwargs):
            if stub:
                return None
            with reads.suspended() if reads is not None else contextlib.nullcontext():
                return run(self, *args, **kwargs)

        return launch

    for cls, run in saved.items():
        cls.run = wrap(run)
    try:
        yield
    finally:
        for cls, run in saved.items():
            cls.run = run
