"""mixlab: fused Triton kernels for mixup, their regression suite, benchmarks and ablations.

Public API (docs/design.md §2): `mix_`, `mix`, `cutmix_`, `mixup_cross_entropy`,
`soft_cross_entropy`, `Mixup` and the `reference` module. Attributes load on first use
(PEP 562) so that `import mixlab` stays light and never imports triton by itself.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "mix_": "mixlab.mixing",
    "mix": "mixlab.mixing",
    "cutmix_": "mixlab.mixing",
    "mixup_cross_entropy": "mixlab.losses",
    "soft_cross_entropy": "mixlab.losses",
    "Mixup": "mixlab.transform",
    "reference": "mixlab.reference",
    "MixedTarget": "mixlab.targets",
    # submodules, loaded on first use: the timm and torchvision drop-ins, the loss modules
    "timm": "mixlab.timm",
    "torchvision": "mixlab.torchvision",
    "nn": "mixlab.nn",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mixlab' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module == f"mixlab.{name}" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
