"""torchvision v2's MixUp and CutMix, mixing the images through mixlab's kernels.

A torchvision v2 pipeline switches by its imports alone:

    from mixlab.torchvision import CutMix, MixUp   # for torchvision.transforms.v2's

    cutmix_or_mixup = v2.RandomChoice([CutMix(num_classes=10), MixUp(num_classes=10)])
    loader = DataLoader(ds, collate_fn=lambda b: cutmix_or_mixup(*default_collate(b)))

The classes are torchvision's own, with only the image step replaced, so everything else
is theirs: the constructors, the call on (images, labels) or a sample structure through
labels_getter, tv_tensors.Image / Video, their checks and errors, one lam per batch drawn
from their Beta distribution (so torch.manual_seed gives their lam and box), partners by
roll (row i with row i-1), and the labels: torchvision's one-hot mix, dense (B, C).

In place or not: torchvision returns a new batch and leaves its input alone, and so do
these by default (mixlab.mix: one copy and one mixing pass, where torchvision makes three
full-size temporaries). inplace=True mixes the input batch itself (mixlab.mix_ /
mixlab.cutmix_: no copy at all); that is safe where the batch is fresh and nothing else
holds it, as in a collate_fn right after default_collate. Images must be float32, float16
or bfloat16 (convert uint8 first with v2.ToDtype(torch.float32, scale=True)).

torchvision is imported with this module (it is what the module adapts); `import mixlab`
does not import it.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from mixlab.backends import BACKENDS
from mixlab.mixing import cutmix_, mix, mix_
from mixlab.permutations import make_permutation
from mixlab.validation import FLOAT_DTYPES


class _MixlabImages:
    """The image step of both transforms; the rest is torchvision's."""

    def __init__(self, *, inplace: bool = False, backend: str = "auto", **kwargs):
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        super().__init__(**kwargs)
        self.inplace = bool(inplace)
        self.backend = backend

    def transform(self, inpt, params):
        if inpt is params["labels"] or not isinstance(inpt, torch.Tensor):
            return super().transform(inpt, params)  # labels and pass-through: torchvision's
        if not (isinstance(inpt, (tv_tensors.Image, tv_tensors.Video)) or _is_pure(inpt)):
            return inpt
        self._check_image_or_video(inpt, batch_size=params["batch_size"])  # torchvision's
        if inpt.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"images: mixlab mixes {FLOAT_DTYPES} images, got {inpt.dtype}; convert them "
                "first, e.g. with v2.ToDtype(torch.float32, scale=True)"
            )
        images = inpt if _is_pure(inpt) else inpt.as_subclass(torch.Tensor)  # unwrap, no copy
        if not self.inplace:
            images = images.contiguous()
        perm = make_permutation("roll", images.shape[0]).to(images.device)
        out = self._mix(images, perm, params)
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Video)):
            return tv_tensors.wrap(out, like=inpt)
        return out


class MixUp(_MixlabImages, v2.MixUp):
    """torchvision.transforms.v2.MixUp(alpha=1.0, num_classes=None, labels_getter="default"),
    plus inplace= and backend= (see the module docstring)."""

    def _mix(self, images: torch.Tensor, perm: torch.Tensor, params) -> torch.Tensor:
        mix_fn = mix_ if self.inplace else mix
        return mix_fn(images, perm, params["lam"], backend=self.backend)


class CutMix(_MixlabImages, v2.CutMix):
    """torchvision.transforms.v2.CutMix(alpha=1.0, num_classes=None, labels_getter="default"),
    plus inplace= and backend= (see the module docstring)."""

    def _mix(self, images: torch.Tensor, perm: torch.Tensor, params) -> torch.Tensor:
        x1, y1, x2, y2 = params["box"]  # torchvision's (x1, y1, x2, y2); mixlab's (y0, y1, x0, x1)
        out = images if self.inplace else images.clone()
        return cutmix_(out, perm, (y1, y2, x1, x2), backend=self.backend)[0]


def _is_pure(inpt) -> bool:
    return isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)
