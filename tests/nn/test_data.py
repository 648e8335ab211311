"""Dataset readers: IDX and CIFAR-10 round trips on synthetic files, every malformed-file error, the real data."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from nn import data
from nn.data import DataError


def _write_pair(tmp_path, rng, n=7, h=5, w=4, suffix=""):
    img = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    lab = rng.integers(0, 10, size=n, dtype=np.uint8)
    ip, lp = tmp_path / f"img-idx3-ubyte{suffix}", tmp_path / f"lab-idx1-ubyte{suffix}"
    data.write_idx(ip, img)
    data.write_idx(lp, lab)
    return img, lab, ip, lp


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, rng, suffix):
    img, lab, ip, lp = _write_pair(tmp_path, rng, suffix=suffix)
    assert np.array_equal(data.read_idx(ip, data.IDX_IMAGES_MAGIC), img)
    assert np.array_equal(data.read_idx(lp, data.IDX_LABELS_MAGIC), lab)
    x, y = data.read_idx_pair(ip, lp)
    assert x.shape == (7, 1, 5, 4) and x.dtype == np.float32
    assert y.shape == (7,) and y.dtype == np.int64
    assert np.array_equal(x[:, 0], img.astype(np.float32) / np.float32(255))
    assert np.array_equal(y, lab)
    if suffix == ".gz":
        with gzip.open(ip, "rb") as f:
            assert f.read(4) == b"\x00\x00\x08\x03"


def test_idx_header_bytes(tmp_path):
    p = tmp_path / "t-idx3-ubyte"
    data.write_idx(p, np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
    assert p.read_bytes() == bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_truncated(tmp_path, rng, suffix):
    _, _, ip, _ = _write_pair(tmp_path, rng)
    raw = ip.read_bytes()[:-3]
    bad = tmp_path / f"cut-idx3-ubyte{suffix}"
    if suffix:
        with gzip.open(bad, "wb") as f:
            f.write(raw)
    else:
        bad.write_bytes(raw)
    with pytest.raises(DataError, match=r"cut-idx3-ubyte.*truncated.*\(7, 5, 4\) = 140 bytes.*holds 137"):
        data.read_idx(bad, data.IDX_IMAGES_MAGIC)


def test_idx_truncated_header_and_trailing_bytes(tmp_path, rng):
    _, _, ip, _ = _write_pair(tmp_path, rng)
    raw = ip.read_bytes()
    short = tmp_path / "short"
    short.write_bytes(raw[:10])
    with pytest.raises(DataError, match="short: truncated header"):
        data.read_idx(short)
    long = tmp_path / "long"
    long.write_bytes(raw + b"\x00")
    with pytest.raises(DataError, match="long: has trailing bytes"):
        data.read_idx(long)


def test_idx_broken_gzip(tmp_path, rng):
    _, _, ip, _ = _write_pair(tmp_path, rng, suffix=".gz")
    bad = tmp_path / "broken.gz"
    bad.write_bytes(ip.read_bytes()[:20])
    with pytest.raises(DataError, match="broken.gz: cannot read"):
        data.read_idx(bad)


def test_idx_wrong_magic(tmp_path, rng):
    _, _, ip, lp = _write_pair(tmp_path, rng)
    with pytest.raises(DataError, match=r"lab-idx1-ubyte: wrong magic number 0x00000801, expected 0x00000803"):
        data.read_idx(lp, data.IDX_IMAGES_MAGIC)
    with pytest.raises(DataError, match="img-idx3-ubyte: wrong magic number 0x00000803"):
        data.read_idx_pair(ip, ip)
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DataError, match="junk: not an IDX file"):
        data.read_idx(junk, data.IDX_IMAGES_MAGIC)
    floats = tmp_path / "floats"
    floats.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + bytes(4))
    with pytest.raises(DataError, match="floats: IDX data type code 0x0d"):
        data.read_idx(floats)


def test_idx_count_mismatch_and_missing(tmp_path, rng):
    _, _, ip, _ = _write_pair(tmp_path, rng, n=7)
    lp = tmp_path / "six-labels"
    data.write_idx(lp, np.zeros(6, np.uint8))
    with pytest.raises(DataError, match=r"size mismatch: .*img-idx3-ubyte holds 7 images but .*six-labels holds 6"):
        data.read_idx_pair(ip, lp)
    with pytest.raises(FileNotFoundError, match="nope-idx3"):
        data.read_idx(tmp_path / "nope-idx3")


def test_load_dataset_from_data_dir(tmp_path, rng):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for split, (img_stem, lab_stem) in data.IDX_FILES.items():
        n = 5 if split == "train" else 3
        data.write_idx(folder / (img_stem + ".gz"), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        data.write_idx(folder / lab_stem, rng.integers(0, 10, n, dtype=np.uint8))
    x, y = data.load_dataset("mnist", tmp_path, "train")
    assert x.shape == (5, 1, 28, 28) and y.shape == (5,)
    x, y = data.load_dataset("mnist", folder, "test")
    assert x.shape == (3, 1, 28, 28)


def test_load_dataset_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("LWNN_DATA", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"(?s)dataset 'mnist' not found.*cache/mnist.*--data-dir"):
        data.load_dataset("mnist", tmp_path / "user")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.load_dataset("cifar10")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        data.load_dataset("svhn")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        data.load_dataset("mnist", split="val")
    assert data.main(["ensure", "mnist", str(tmp_path / "user")]) == 1


def _cifar_batch(path, rng, n, keys=("data", "labels")):
    batch = {b"batch_label": b"synthetic"}
    if "data" in keys:
        batch[b"data"] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    if "labels" in keys:
        batch[b"labels"] = [int(v) for v in rng.integers(0, 10, n)]
    with open(path, "wb") as f:
        pickle.dump(batch, f)
    return batch


def test_cifar10_reader(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [_cifar_batch(folder / n, rng, 4) for n in data.CIFAR10_TRAIN + data.CIFAR10_TEST]
    x, y = data.load_dataset("cifar10", tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    # Channel-major rows: the first 1024 bytes are the red plane of image 0.
    assert np.array_equal(x[0, 0].ravel(), batches[0][b"data"][0, :1024] / np.float32(255))
    assert np.array_equal(y[4:8], batches[1][b"labels"])
    xt, yt = data.load_dataset("cifar10", tmp_path, "test")
    assert xt.shape == (4, 3, 32, 32) and np.array_equal(yt, batches[-1][b"labels"])


def test_cifar10_malformed(tmp_path, rng):
    _cifar_batch(tmp_path / "nolabels", rng, 3, keys=("data",))
    with pytest.raises(DataError, match=r"nolabels: CIFAR-10 batch lacks key\(s\) \['labels'\]"):
        data.read_cifar10_batch(tmp_path / "nolabels")
    with open(tmp_path / "shape", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"shape: 'data' must be uint8 \(N, 3072\)"):
        data.read_cifar10_batch(tmp_path / "shape")
    with open(tmp_path / "count", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f)
    with pytest.raises(DataError, match=r"count: 2 images but 'labels' has shape \(1,\)"):
        data.read_cifar10_batch(tmp_path / "count")
    (tmp_path / "garbage").write_bytes(b"\x00not a pickle")
    with pytest.raises(DataError, match="garbage: not a CIFAR-10 python batch"):
        data.read_cifar10_batch(tmp_path / "garbage")


def test_normalize_and_stats(rng):
    x = rng.random((50, 3, 4, 4)).astype(np.float32)
    mean, std = data.channel_stats(x)
    z = data.normalize(x, mean, std)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)
    with pytest.raises(ValueError, match="std must be positive"):
        data.normalize(x, 0.0, 0.0)


def test_batches_order_and_determinism():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    got = list(data.batches(x, y, 4, np.random.default_rng(3)))
    assert [len(b[1]) for b in got] == [4, 4, 2]
    ys = np.concatenate([b[1] for b in got])
    assert sorted(ys) == list(range(10)) and not np.array_equal(ys, np.arange(10))
    assert all(np.array_equal(bx[:, 0], by) for bx, by in got)
    again = np.concatenate([b[1] for b in data.batches(x, y, 4, np.random.default_rng(3))])
    assert np.array_equal(ys, again)
    assert [len(b[1]) for b in data.batches(x, y, 4, shuffle=False, drop_last=True)] == [4, 4]
    # The permutation is drawn at call time, so the generator state is fixed before iterating.
    r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
    data.batches(x, y, 4, r1)
    r2.permutation(10)
    assert r1.random() == r2.random()
    assert data.num_batches(10, 4) == 3 and data.num_batches(10, 4, drop_last=True) == 2


def test_augmentation(rng):
    x = rng.random((16, 3, 6, 6)).astype(np.float32)
    c = data.random_crop(x, 2, np.random.default_rng(0))
    assert c.shape == x.shape and c.dtype == x.dtype
    # Each crop is a shifted window of the zero-padded image.
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(16):
        assert any(np.array_equal(c[i], padded[i, :, a:a + 6, b:b + 6]) for a in range(5) for b in range(5))
    assert np.array_equal(data.random_crop(x, 0, rng), x)
    f = data.random_flip(x, np.random.default_rng(0))
    flipped = [np.array_equal(f[i], x[i, :, :, ::-1]) for i in range(16)]
    kept = [np.array_equal(f[i], x[i]) for i in range(16)]
    assert all(a or b for a, b in zip(flipped, kept)) and any(flipped) and any(kept)
    assert data.cifar_augment(x, rng).shape == x.shape


def test_real_fashion_mnist():
    """The real data must be there (``make data`` puts it there): a missing dataset FAILS this test."""
    folder = data.find_dataset("fashion-mnist")
    assert folder is not None, data._missing_message("fashion-mnist", None)
    x, y = data.load_dataset("fashion-mnist", split="train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (60000,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert np.array_equal(np.bincount(y), np.full(10, 6000))
    xt, yt = data.load_dataset("fashion-mnist", split="test")
    assert xt.shape == (10000, 1, 28, 28) and np.array_equal(np.bincount(yt), np.full(10, 1000))
    mean, std = data.channel_stats(x)
    np.testing.assert_allclose([mean[0], std[0]], [0.2860, 0.3530], atol=1e-4)


def _fake_download(name, dest):
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, (img_stem, lab_stem) in data.IDX_FILES.items():
        n = 4 if split == "train" else 2
        data.write_idx(dest / (img_stem + ".gz"), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        data.write_idx(dest / (lab_stem + ".gz"), rng.integers(0, 10, n, dtype=np.uint8))


def test_ensure_downloads_into_cache_when_not_root(tmp_path, monkeypatch, capsys):
    """The `make data` path without the Debian package: no network here, so the download is simulated."""
    monkeypatch.setenv("LWNN_DATA", str(tmp_path / "cache"))
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion-mnist", tmp_path / "no-system-copy")
    monkeypatch.setattr(data.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(data, "_download", _fake_download)
    assert data.main(["ensure", "fashion-mnist"]) == 0
    assert str(tmp_path / "cache" / "fashion-mnist") in capsys.readouterr().out
    x, _ = data.load_dataset("fashion-mnist", split="test")
    assert x.shape == (2, 1, 28, 28)

    def offline(name, dest):
        raise OSError("network unreachable")

    monkeypatch.setenv("LWNN_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "_download", offline)
    assert data.main(["ensure", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert "dataset 'fashion-mnist' not found" in err and "network unreachable" in err
    assert str(tmp_path / "empty" / "fashion-mnist") in err
    assert data.main(["fetch"]) == 2
