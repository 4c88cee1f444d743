"""CIFAR-10 batches are read with a restricted unpickler (mixlab.active.data): the real
format loads under every pickle protocol numpy writes, and a crafted pickle that names any
other callable is refused with a message naming data_root, without running it."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from mixlab.active import data


def _batch(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"a.png", b"b.png", b"c.png"][:n],
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_format_loads_under_every_protocol(tmp_path, protocol):
    batch = _batch()
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    x, y = data._read_cifar_batch(path)
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(x * 255.0, batch[b"data"].reshape(3, 3, 32, 32))
    assert y.tolist() == batch[b"labels"]


class _RunsCode:
    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return (os.mkdir, (self.mark,))


def test_crafted_pickle_is_refused_and_not_run(tmp_path):
    mark = tmp_path / "code-ran"
    path = tmp_path / "data_batch_1"
    batch = {**_batch(), b"data": _RunsCode(str(mark))}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    refused = r"data_root: .*data_batch_1.*refusing to load posix\.mkdir"
    with pytest.raises(ValueError, match=refused):
        data._read_cifar_batch(path)
    assert not mark.exists()


def test_array_subclass_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    batch = {**_batch(), b"data": np.ma.masked_array(_batch()[b"data"])}
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match="data_root: .*refusing"):
        data._read_cifar_batch(path)


@pytest.mark.parametrize(
    "batch",
    [
        [1, 2, 3],
        {b"labels": [0, 1, 2]},
        {**_batch(), b"labels": [0, 1, 99]},
        {**_batch(), b"data": np.zeros((3, 3072), dtype=np.float64)},
        {**_batch(), b"data": np.zeros((3, 10), dtype=np.uint8)},
    ],
    ids=["a list", "no data", "label out of range", "float pixels", "wrong row size"],
)
def test_wrong_structure_is_refused(tmp_path, batch):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match="data_root: .* is not a CIFAR-10 python batch"):
        data._read_cifar_batch(path)


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(_batch(), protocol=2)[:100])
    with pytest.raises(ValueError, match="data_root: .* is not a CIFAR-10 python batch"):
        data._read_cifar_batch(path)
