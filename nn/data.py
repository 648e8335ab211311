"""Datasets (Fashion-MNIST, MNIST, CIFAR-10), validated readers, normalisation, mini-batches and augmentation.

Readers check what they read and name the file in every error: an IDX file must carry the right magic
number (``0x00000803`` images, ``0x00000801`` labels, data type code ``0x08`` = uint8), the announced number
of dimensions, and exactly the announced number of bytes; images and labels must agree in count. CIFAR-10
python batches must hold ``data`` (N, 3072) uint8 and ``labels`` of length N.

Where the data comes from (``load_dataset``):

* Fashion-MNIST: ``data_dir`` (the folder itself or ``data_dir/fashion-mnist``), then
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``), then the cache folder
  ``$LWNN_DATA/fashion-mnist`` (``LWNN_DATA`` defaults to ``~/.cache/lwnn``).
  ``python -m nn.data ensure fashion-mnist`` makes sure it is there (apt as root on Debian, else a download
  of the four standard IDX files into the cache folder).
* MNIST (same file names as Fashion-MNIST) and CIFAR-10 (``cifar-10-batches-py``) are never downloaded: put
  them in ``data_dir`` or the cache folder; the error says where.

Images come back as float32 (N, C, H, W) in [0, 1], labels as int64 (N,).
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
IDX_UBYTE = 0x08

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}
DOWNLOAD_URLS = {"fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
DATASETS = ("fashion-mnist", "mnist", "cifar10")
SPLITS = ("train", "test")


class DataError(ValueError):
    """A data file is missing, truncated or not what its name says; the message names the file."""


# ---------------------------------------------------------------------------------------------------- IDX
def _read_bytes(path: Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # a truncated or corrupt gzip stream
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or not gzip data") from e


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) of unsigned bytes into a uint8 array of the announced shape.

    Parameters
    ----------
    path : file name; a ``.gz`` suffix means gzip-compressed.
    magic : the expected 4-byte magic number (``IDX_IMAGES_MAGIC`` or ``IDX_LABELS_MAGIC``), or None to accept
        any uint8 IDX file.

    Returns
    -------
    uint8 array of shape (d0, d1, ...) as announced in the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic number 0x{found:08x}, expected "
                        f"0x{magic if magic is not None else IDX_IMAGES_MAGIC:08x})")
    if raw[2] != IDX_UBYTE:
        raise DataError(f"{path}: IDX data type code 0x{raw[2]:02x}, only 0x08 (unsigned byte) is supported")
    if magic is not None and found != magic:
        raise DataError(f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x} "
                        f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, a {ndim}-d IDX header needs {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    want = int(np.prod(shape, dtype=np.int64))
    have = len(raw) - header
    if have != want:
        what = "truncated" if have < want else "has trailing bytes"
        raise DataError(f"{path}: {what}: header announces shape {shape} = {want} bytes of data, file holds {have}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed if ``path`` ends in ``.gz``); the inverse of read_idx."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"write_idx writes uint8 arrays only, got {array.dtype}")
    header = bytes([0, 0, IDX_UBYTE, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def read_idx_pair(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) float32 in [0, 1] and labels (N,) int64 from an IDX images/labels pair."""
    img = read_idx(images_path, IDX_IMAGES_MAGIC)
    lab = read_idx(labels_path, IDX_LABELS_MAGIC)
    if img.ndim != 3:
        raise DataError(f"{images_path}: an IDX image file has 3 dimensions (N, H, W), this one has shape {img.shape}")
    if lab.ndim != 1:
        raise DataError(f"{labels_path}: an IDX label file has 1 dimension (N,), this one has shape {lab.shape}")
    if img.shape[0] != lab.shape[0]:
        raise DataError(f"size mismatch: {images_path} holds {img.shape[0]} images but {labels_path} holds "
                        f"{lab.shape[0]} labels")
    x = (img.astype(np.float32) / np.float32(255.0))[:, None]  # (N, H, W) -> (N, 1, H, W)
    return x, lab.astype(np.int64)


# ---------------------------------------------------------------------------------------------------- CIFAR-10
def read_cifar10_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (a pickle): images (N, 3, 32, 32) float32 in [0, 1], labels (N,) int64."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch {path} does not exist")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # any unpickling failure means the file is not a CIFAR batch
        raise DataError(f"{path}: not a CIFAR-10 python batch (unpickling failed: {e})") from e
    if not isinstance(batch, dict):
        raise DataError(f"{path}: a CIFAR-10 batch is a dict, this pickle holds a {type(batch).__name__}")
    batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DataError(f"{path}: CIFAR-10 batch lacks key(s) {missing}; it has {sorted(map(str, batch))}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but 'labels' has shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    x = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)  # (N, 3072) -> (N, C, H, W)
    return x, labels.astype(np.int64)


def read_cifar10(folder: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The 5 training batches (50000 images) or the test batch (10000) of a ``cifar-10-batches-py`` folder."""
    names = CIFAR10_TRAIN if split == "train" else CIFAR10_TEST
    parts = [read_cifar10_batch(Path(folder) / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---------------------------------------------------------------------------------------------------- finding files
def cache_root() -> Path:
    """``$LWNN_DATA`` or ``~/.cache/lwnn``: where downloaded or user-provided datasets live."""
    return Path(os.environ.get("LWNN_DATA") or Path.home() / ".cache" / "lwnn").expanduser()


def _candidates(name: str, data_dir: str | Path | None) -> list[Path]:
    sub = CIFAR10_FOLDER if name == "cifar10" else name
    dirs = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        dirs += [d, d / name, d / sub]
    if name in SYSTEM_DIRS:
        dirs.append(SYSTEM_DIRS[name])
    root = cache_root()
    dirs += [root / name, root / name / sub, root / sub] if sub != name else [root / name]
    return list(dict.fromkeys(dirs))


def _idx_file(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / (stem + ".gz")):
        if p.is_file():
            return p
    return None


def find_dataset(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The first folder that holds every file of dataset ``name``, or None."""
    for d in _candidates(name, data_dir):
        if name == "cifar10":
            if all((d / n).is_file() for n in CIFAR10_TRAIN + CIFAR10_TEST):
                return d
        elif all(_idx_file(d, s) for pair in IDX_FILES.values() for s in pair):
            return d
    return None


def _missing_message(name: str, data_dir) -> str:
    files = (", ".join(CIFAR10_TRAIN + CIFAR10_TEST) if name == "cifar10"
             else ", ".join(s + "[.gz]" for pair in IDX_FILES.values() for s in pair))
    looked = "\n  ".join(str(d) for d in _candidates(name, data_dir))
    hint = " or run `python -m nn.data ensure fashion-mnist`" if name == "fashion-mnist" else ""
    return (f"dataset {name!r} not found; looked in:\n  {looked}\n"
            f"put the files ({files}) in one of these folders (or pass --data-dir){hint}")


def load_dataset(name: str = "fashion-mnist", data_dir: str | Path | None = None,
                 split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` ('train' or 'test') of 'fashion-mnist', 'mnist' or 'cifar10'.

    Returns
    -------
    x : float32 (N, 1, 28, 28) for the MNISTs, (N, 3, 32, 32) for CIFAR-10, values in [0, 1]
    y : int64 (N,) class indices 0..9
    """
    name = name.lower()
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    folder = find_dataset(name, data_dir)
    if folder is None:
        raise FileNotFoundError(_missing_message(name, data_dir))
    if name == "cifar10":
        return read_cifar10(folder, split)
    img, lab = IDX_FILES[split]
    return read_idx_pair(_idx_file(folder, img), _idx_file(folder, lab))


# ---------------------------------------------------------------------------------------------------- ensure
def _is_debian() -> bool:
    return Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def _apt_install(package: str) -> bool:
    cmd = ["apt-get", "install", "-y", "-q", package]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, check=False, env=env).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
    return subprocess.run(cmd, check=False, env=env).returncode == 0


def _download(name: str, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for pair in IDX_FILES.values():
        for stem in pair:
            target = dest / (stem + ".gz")
            if target.is_file():
                continue
            url = DOWNLOAD_URLS[name] + stem + ".gz"
            print(f"downloading {url} -> {target}", file=sys.stderr)
            tmp = target.with_suffix(".gz.part")
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            os.replace(tmp, target)


def ensure_dataset(name: str = "fashion-mnist", data_dir: str | Path | None = None) -> Path:
    """Make sure dataset ``name`` is present and return its folder (installs or downloads Fashion-MNIST only)."""
    folder = find_dataset(name, data_dir)
    if folder is not None:
        return folder
    if name != "fashion-mnist":
        raise FileNotFoundError(_missing_message(name, data_dir))
    errors = []
    if hasattr(os, "geteuid") and os.geteuid() == 0 and _is_debian():
        print(f"installing Debian package {DEBIAN_PACKAGES[name]}", file=sys.stderr)
        if not _apt_install(DEBIAN_PACKAGES[name]):
            errors.append(f"apt-get install {DEBIAN_PACKAGES[name]} failed")
        folder = find_dataset(name, data_dir)
        if folder is not None:
            return folder
    try:
        _download(name, cache_root() / name)
    except OSError as e:
        errors.append(f"download from {DOWNLOAD_URLS[name]} failed: {e}")
    folder = find_dataset(name, data_dir)
    if folder is None:
        raise FileNotFoundError(_missing_message(name, data_dir) + "\n" + "\n".join(errors))
    # A download must also be readable: read it once so a broken file is reported now, not mid-run.
    for split in SPLITS:
        load_dataset(name, data_dir, split)
    return folder


# ---------------------------------------------------------------------------------------------------- preprocessing
def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float32, shape (C,)) of images x (N, C, H, W), in float64."""
    x64 = x.astype(np.float64)
    return x64.mean(axis=(0, 2, 3)).astype(np.float32), x64.std(axis=(0, 2, 3)).astype(np.float32)


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
    """(x - mean) / std per channel; mean and std are scalars or (C,) arrays (use the training set's)."""
    mean = np.asarray(mean, dtype=x.dtype).reshape(-1, 1, 1)  # (C,) -> (C, 1, 1)
    std = np.asarray(std, dtype=x.dtype).reshape(-1, 1, 1)
    if np.any(std <= 0):
        raise ValueError(f"normalize: std must be positive, got {std.ravel()}")
    if mean.shape[0] not in (1, x.shape[1]) or std.shape[0] not in (1, x.shape[1]):
        raise ValueError(f"normalize: mean/std of length {mean.shape[0]}/{std.shape[0]} for {x.shape[1]} channels")
    return (x - mean) / std


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None,
            shuffle: bool = True, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches ``(x[idx], y[idx])`` in an order drawn from ``rng``.

    The permutation is drawn when ``batches`` is called (not on first iteration), so the generator's state
    after the call is fixed; ``shuffle=False`` keeps the order and needs no ``rng``.
    """
    if len(x) != len(y):
        raise ValueError(f"batches: {len(x)} inputs but {len(y)} targets")
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    n = len(x)
    if shuffle:
        if rng is None:
            raise ValueError("batches: shuffle=True needs an rng (np.random.Generator)")
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n

    def _gen():
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]

    return _gen()


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def random_crop(x: np.ndarray, padding: int = 4, rng: np.random.Generator | None = None) -> np.ndarray:
    """Zero-pad (N, C, H, W) by ``padding`` and crop back to (H, W) at a random offset per image."""
    if rng is None:
        raise ValueError("random_crop needs an rng (np.random.Generator)")
    n, _, h, w = x.shape
    p = int(padding)
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))  # (N, C, H+2p, W+2p)
    dy = rng.integers(0, 2 * p + 1, size=n)
    dx = rng.integers(0, 2 * p + 1, size=n)
    rows = dy[:, None] + np.arange(h)  # (N, H)
    cols = dx[:, None] + np.arange(w)  # (N, W)
    return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Flip each image of (N, C, H, W) left-right with probability 1/2."""
    if rng is None:
        raise ValueError("random_flip needs an rng (np.random.Generator)")
    flip = rng.random(len(x)) < 0.5
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out


def cifar_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The standard CIFAR training augmentation: random 4-pixel-padded crop, then a random horizontal flip."""
    return random_flip(random_crop(x, 4, rng), rng)


# ---------------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3) or argv[0] != "ensure" or argv[1] not in DATASETS:
        print("usage: python -m nn.data ensure {fashion-mnist,mnist,cifar10} [DATA_DIR]", file=sys.stderr)
        return 2
    try:
        folder = ensure_dataset(argv[1], argv[2] if len(argv) == 3 else None)
    except (FileNotFoundError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{argv[1]}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
