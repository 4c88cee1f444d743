"""mixlab.torchvision against the installed torchvision v2 itself.

Both draw lam (and CutMix's box) from torch's global RNG through torchvision's own
make_params, so after the same torch.manual_seed they see the same lam, box and roll
partners: images and one-hot soft labels must then be torchvision's to the design
tolerances, in pipelines (default_collate, RandomChoice, sample dicts) as in direct calls.
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

import mixlab.torchvision as mtv
from mixlab.verify.tolerance import TOLERANCE as TOL

NUM_CLASSES = 10
CLASSES = ["MixUp", "CutMix"]


def _batch(device, batch=8, dtype=torch.float32, shape=(3, 11, 13), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, *shape), generator=g).to(device, dtype)
    return x, torch.randint(0, NUM_CLASSES, (batch,), generator=g).to(device)


def _close(actual, expected, dtype=torch.float32):
    tol = TOL[dtype]
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol, rtol=tol)


def _both(name, inputs, seed, **kwargs):
    """torchvision's output and mixlab's for the same inputs after the same seed."""
    kwargs.setdefault("num_classes", NUM_CLASSES)
    torch.manual_seed(seed)
    theirs = getattr(v2, name)(**{k: v for k, v in kwargs.items() if k != "inplace"})(*inputs)
    torch.manual_seed(seed)
    ours = getattr(mtv, name)(**kwargs)(*inputs)
    return theirs, ours


@pytest.mark.parametrize(
    "name,batch,dtype,alpha",
    list(
        itertools.product(
            CLASSES, [1, 2, 7, 16], [torch.float32, torch.float16, torch.bfloat16], [1.0, 0.3]
        )
    ),
)
def test_images_and_labels_equal_torchvisions(device, name, batch, dtype, alpha):
    for seed in range(3):
        x, y = _batch(device, batch, dtype, seed=seed)
        before = x.clone()
        (x_t, y_t), (x_m, y_m) = _both(name, (x, y), seed, alpha=alpha)
        _close(x_m, x_t, dtype)
        assert y_m.dtype == y_t.dtype and y_m.shape == (batch, NUM_CLASSES)
        _close(y_m, y_t)
        assert torch.equal(x, before), "out of place by default, as torchvision"


@pytest.mark.parametrize("name", CLASSES)
def test_inplace_mixes_the_input_batch_itself(device, name):
    x, y = _batch(device)
    (x_t, y_t), (x_m, y_m) = _both(name, (x.clone(), y), 4, inplace=True)
    torch.manual_seed(4)
    out, labels = getattr(mtv, name)(num_classes=NUM_CLASSES, inplace=True)(x, y)
    assert out is x  # mixed in place, through mixlab's kernels (torchvision never writes x)
    _close(out, x_t)
    _close(labels, y_t)


@pytest.mark.parametrize("name,kernel", [("MixUp", "mix"), ("CutMix", "cutmix_")])
def test_out_of_place_still_mixes_through_mixlab(device, monkeypatch, name, kernel):
    calls = []
    real = getattr(mtv, kernel)

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(mtv, kernel, spy)
    x, y = _batch(device)
    getattr(mtv, name)(num_classes=NUM_CLASSES)(x, y)
    assert calls == [x.shape]


@pytest.mark.parametrize("name", CLASSES)
def test_tv_tensors_videos_and_soft_labels(device, name):
    x, y = _batch(device)
    image = tv_tensors.Image(x)
    video = tv_tensors.Video(torch.rand(4, 2, 3, 9, 10).to(device))
    soft = torch.softmax(torch.randn(8, NUM_CLASSES), 1).to(device)
    for inputs, num_classes in [((image, y), 10), ((video, y[:4]), 10), ((x, soft), None)]:
        (x_t, y_t), (x_m, y_m) = _both(name, inputs, 2, num_classes=num_classes)
        assert type(x_m) is type(x_t)
        _close(x_m, x_t)
        _close(y_m, y_t)


@pytest.mark.parametrize("name", CLASSES)
def test_sample_structures_and_labels_getter(device, name):
    x, y = _batch(device)
    extra = torch.arange(8)
    samples = [
        ({"image": x, "labels": y, "extra": extra},),  # default getter: the "labels" key
        ((x, {"boxes_free_label": y}),),  # a label-like key in a dict
    ]
    for sample in samples:
        theirs, ours = _both(name, sample, 5)
        flat_t, flat_m = (torch.utils._pytree.tree_leaves(o) for o in (theirs, ours))
        assert len(flat_t) == len(flat_m)
        for a, b in zip(flat_t, flat_m, strict=True):
            _close(b, a)
    getter = lambda inputs: inputs["y"]  # noqa: E731
    theirs, ours = _both(name, ({"x": x, "y": y},), 6, labels_getter=getter)
    _close(ours["x"], theirs["x"])
    _close(ours["y"], theirs["y"])


def test_random_choice_in_a_default_collate_pipeline(device):
    """A DataLoader whose collate_fn is v2.RandomChoice([CutMix, MixUp]) after
    default_collate: the same batches as torchvision's, with only the imports changed."""
    x, y = _batch(device, batch=40, shape=(1, 8, 8))
    dataset = TensorDataset(x, y)

    def batches(lib):
        choice = v2.RandomChoice(
            [lib.CutMix(num_classes=NUM_CLASSES), lib.MixUp(num_classes=NUM_CLASSES)]
        )
        loader = DataLoader(dataset, batch_size=8, collate_fn=lambda b: choice(*default_collate(b)))
        torch.manual_seed(0)
        return list(loader)

    for (x_t, y_t), (x_m, y_m) in zip(batches(v2), batches(mtv), strict=True):
        _close(x_m, x_t)
        _close(y_m, y_t)


@pytest.mark.parametrize("name", CLASSES)
def test_errors(device, name):
    x, y = _batch(device)
    with pytest.raises(TypeError, match="^images: .*uint8"):
        getattr(mtv, name)(num_classes=NUM_CLASSES)((x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="^backend:"):
        getattr(mtv, name)(num_classes=NUM_CLASSES, backend="gpu")
    # torchvision's own checks are kept, with their messages
    for bad in [(x, y[:4]), (x[0], y)]:
        with pytest.raises(ValueError) as theirs:
            getattr(v2, name)(num_classes=NUM_CLASSES)(*bad)
        with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
            getattr(mtv, name)(num_classes=NUM_CLASSES)(*bad)
    with pytest.raises(ValueError, match="num_classes must be passed"):
        getattr(mtv, name)()(x, y)
    before = x.clone()
    with pytest.raises(ValueError, match="^x: must be contiguous"):
        getattr(mtv, name)(num_classes=NUM_CLASSES, inplace=True)(x.transpose(2, 3), y)
    assert torch.equal(x, before)
