"""The offline datasets: shapes, dtypes, labels, reproducible splits, CIFAR-10's folder format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mixlab.active import data


@pytest.mark.parametrize(
    ("name", "shape", "n_train", "n_test"),
    [("digits", (1, 8, 8), 1347, 450), ("mnist", (1, 28, 28), 4000, 1000)],
)
def test_bundled_dataset_loads(name, shape, n_train, n_test):
    ds = data.load_dataset(name)
    assert ds.x_train.shape == (n_train, *shape) and ds.x_test.shape == (n_test, *shape)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert data.train_size(name) == n_train
    for y in (ds.y_train, ds.y_test):
        assert int(y.min()) == 0 and int(y.max()) == ds.num_classes - 1 == 9
    # normalised with the train split's statistics
    assert abs(float(ds.x_train.mean())) < 1e-3 and abs(float(ds.x_train.std()) - 1) < 1e-2


def test_split_is_reproducible_and_disjoint():
    first = data._load_cached.__wrapped__("digits", None)  # bypass the cache: a fresh split
    again = data.load_dataset("digits")
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    train_rows = {tuple(r.tolist()) for r in first.x_train.flatten(1)}
    overlap = sum(tuple(r.tolist()) in train_rows for r in first.x_test.flatten(1))
    assert overlap <= 5  # load_digits holds a few duplicate images, nothing more
    assert data.load_dataset("digits") is data.load_dataset("digits")  # cached in-process


def _write_cifar_folder(root, per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / data.CIFAR_DIR
    folder.mkdir()
    images = {}
    for name in (*data.CIFAR_TRAIN_BATCHES, data.CIFAR_TEST_BATCH):
        pixels = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": pixels, b"labels": labels, b"batch_label": b"x"}, f)
        images[name] = (pixels, labels)
    return images


def test_cifar10_reads_a_local_folder_in_cifar_format(tmp_path):
    written = _write_cifar_folder(tmp_path)
    ds = data.load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.y_train.dtype == torch.int64 and ds.num_classes == 10
    assert ds.y_test.tolist() == written["test_batch"][1]
    # rows are R, G, B planes: undo the normalisation and compare the first train image
    raw = torch.from_numpy(written["data_batch_1"][0][0].reshape(3, 32, 32)).float() / 255
    train_raw = np.concatenate([written[n][0] for n in data.CIFAR_TRAIN_BATCHES])
    train_raw = torch.from_numpy(train_raw.reshape(-1, 3, 32, 32)).float() / 255
    mean, std = train_raw.mean((0, 2, 3)), train_raw.std((0, 2, 3))
    restored = ds.x_train[0] * std[:, None, None] + mean[:, None, None]
    torch.testing.assert_close(restored, raw, atol=1e-5, rtol=0)
    # the folder itself works as data_root too
    assert data.load_dataset("cifar10", tmp_path / data.CIFAR_DIR).x_train.shape[0] == 20


def test_cifar10_missing_folder_names_data_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_root.*test_batch"):
        data.load_dataset("cifar10", tmp_path)
    with pytest.raises(ValueError, match="data_root"):
        data.load_dataset("cifar10")
    with pytest.raises(ValueError, match="dataset"):
        data.load_dataset("imagenet")
