"""mixlab's fast CPU mixing: a small C library (mix.c), compiled on first use.

`mix_` and `cutmix_` walk the permutation's cycles in cache-sized column tiles, so an
in-place mix moves the bytes of a copy (docs/design.md §3); mixlab.reference.mix and
mixlab.reference.cutmix are the references they are tested against.

mix.c needs no torch headers: the system C compiler ($CC, else gcc, else cc) builds it
in well under a second into a shared library cached under $MIXLAB_CACHE_DIR (default
$XDG_CACHE_HOME/mixlab or ~/.cache/mixlab); mixlab.native.build names it by a hash of
the sources, flags, compiler and CPU, and loads only a library this user built (owner,
mode and content hash checked). Threads come from OpenMP, bound to the libgomp torch has
already loaded, and their number follows torch.get_num_threads().

Callers validate values (mixlab.validation) before calling in here; the O(1) checks below
only keep what the C code would trust blindly (layout, dtype, bounds) from reaching it.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch

from mixlab.device_checks import LAM_MESSAGE as LAM_RANGE
from mixlab.native import build
from mixlab.validation import PERM_RANGE, PERM_REPEATS, check_box

# One library: the mixing walk (mix.c) and the fused loss (loss.c's forward,
# loss_backward.c, loss_fused.c's forward with the gradient); the headers they include are
# not compiled on their own but are part of the cache key.
SOURCES = tuple(
    Path(__file__).with_name(name)
    for name in ("mix.c", "loss.c", "loss_backward.c", "loss_fused.c")
)
HEADERS = tuple(
    Path(__file__).with_name(name)
    for name in ("simd.h", "mix_checks.h", "mix_rows.h", "vexp.h", "loss.h", "row_stats.h")
)
# No FMA contraction: float32 results are then bit-identical to the reference's
# separate multiply and add. -march=native is safe because the cache key names it.
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared", "-fopenmp")

# Picked by measurement (sweeps of 4 KiB..1 MiB tiles on a 2-core Xeon, 48 KiB L1d, 2 MiB
# L2): a row's tile is read as "next" and must still be cached when it is "cur"; runs
# shorter than MIN_RUN_BYTES jump between rows too often to stream.
TILE_BYTES = 16384
MIN_RUN_BYTES = 2048
# Below this many bytes of x, starting threads costs more than it saves.
PARALLEL_MIN_BYTES = 1 << 18

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # mix.c's enum
# mix.c's status codes (1 is out of memory): perm outside [0, B), perm repeats, lam bad
_BAD_PERM, _PERM_REPEATS, _BAD_LAM = 2, 3, 4
_lock = threading.Lock()
_library: ctypes.CDLL | None = None


def library_path(directory: Path | None = None) -> Path:
    """The cached, verified shared library of SOURCES for this compiler and CPU; built if
    missing (mixlab.native.build)."""
    return build.library_path(SOURCES, CFLAGS, directory, headers=HEADERS)


def bind(path: Path) -> ctypes.CDLL:
    """Load the library at `path` and declare its entry points' C signatures."""
    lib = ctypes.CDLL(str(path))
    i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.mixlab_mix.argtypes = [ptr, c_int, i64, i64, ptr, ptr, ctypes.c_float, c_int, i64, i64]
    lib.mixlab_cutmix.argtypes = [
        ptr,
        i64,
        i64,
        i64,
        i64,
        i64,
        ptr,
        i64,
        i64,
        i64,
        i64,
        c_int,
        i64,
        i64,
    ]
    lib.mixlab_mix.restype = lib.mixlab_cutmix.restype = c_int
    lib.mixlab_mix_out.argtypes = [ptr, ptr, c_int, i64, i64, ptr, ptr, ctypes.c_float, c_int]
    lib.mixlab_mix_out.restype = c_int
    return lib


def load() -> ctypes.CDLL:
    """The library, built if needed and loaded once per process."""
    global _library
    with _lock:
        if _library is None:
            _library = bind(library_path())
        return _library


def _threads(x: torch.Tensor) -> int:
    if x.numel() * x.element_size() < PARALLEL_MIN_BYTES:
        return 1
    return torch.get_num_threads()


def _check_layout(x: torch.Tensor, perm: torch.Tensor, lam=None) -> None:
    """O(1) guards for what the C code trusts blindly (it would read or write out of
    bounds): layout, dtype, device. Value checks are mixlab.validation's, done earlier."""
    if x.device.type != "cpu" or x.dtype not in _DTYPE_CODES or not x.is_contiguous():
        raise ValueError(
            f"x: expected a contiguous CPU float32/float16/bfloat16 tensor, got "
            f"{x.dtype} on {x.device} (contiguous={x.is_contiguous()})"
        )
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x: expected a non-empty batch, got shape {tuple(x.shape)}")
    if (
        perm.device.type != "cpu"
        or perm.dtype != torch.int64
        or perm.shape != x.shape[:1]
        or not perm.is_contiguous()
    ):
        raise ValueError(
            f"perm: expected a contiguous CPU int64 tensor of shape "
            f"({x.shape[0]},), got {perm.dtype} {tuple(perm.shape)} on {perm.device}"
        )
    if isinstance(lam, torch.Tensor) and (
        lam.device.type != "cpu"
        or lam.dtype != torch.float32
        or lam.shape != x.shape[:1]
        or not lam.is_contiguous()
    ):
        raise ValueError(
            f"lam: expected a float or a contiguous CPU float32 tensor of shape "
            f"({x.shape[0]},), got {lam.dtype} {tuple(lam.shape)} on {lam.device}"
        )


def _check(status: int, name: str, batch: int) -> None:
    """Raise what mix.c's status means; its value errors are mixlab.validation's, word for
    word (mix.c checks perm and a per-sample lam before it writes anything)."""
    if status == _BAD_PERM:
        raise ValueError(PERM_RANGE.format(batch=batch))
    if status == _PERM_REPEATS:
        raise ValueError(PERM_REPEATS)
    if status == _BAD_LAM:
        raise ValueError(LAM_RANGE)
    if status != 0:
        raise MemoryError(f"mixlab.native.{name}: out of memory for the cycle plan")


def mix_(x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor) -> None:
    """In place: x[i] <- lam_i x[i] + (1 - lam_i) x[perm[i]], with x's values before the call.

    x: contiguous CPU float32/float16/bfloat16; perm: CPU int64 permutation of range(B);
    lam: a float, or a contiguous (B,) float32 tensor. perm's and lam's values are checked
    in C before anything is written (ValueError naming them).
    """
    perm = perm.contiguous()  # a strided perm is valid; the C code reads a contiguous one
    _check_layout(x, perm, lam)
    mix_laid_out_(x, perm, lam)


def mix_laid_out_(x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor) -> None:
    """mix_ for arguments whose layout the caller has checked (mixlab.cpu_path)."""
    batch = x.shape[0]
    per_sample = isinstance(lam, torch.Tensor)
    status = (_library or load()).mixlab_mix(
        x.data_ptr(),
        _DTYPE_CODES[x.dtype],
        batch,
        x.numel() // batch,
        perm.data_ptr(),
        lam.data_ptr() if per_sample else None,
        0.0 if per_sample else lam,
        _threads(x),
        TILE_BYTES,
        MIN_RUN_BYTES,
    )
    if status:
        _check(status, "mix_", batch)


def cutmix_(x: torch.Tensor, perm: torch.Tensor, box: tuple[int, int, int, int]) -> None:
    """In place: x[i][..., y0:y1, x0:x1] <- x[perm[i]][..., y0:y1, x0:x1] (pre-call values).

    box = (y0, y1, x0, x1) over the last two dims, already clipped to them. perm is checked
    even when the box is empty.
    """
    perm = perm.contiguous()
    _check_layout(x, perm)
    if x.ndim < 3:
        raise ValueError(f"x: CutMix needs (B, ..., H, W), got shape {tuple(x.shape)}")
    cutmix_laid_out_(x, perm, check_box(box, x.shape[-2], x.shape[-1]))


def cutmix_laid_out_(x: torch.Tensor, perm: torch.Tensor, box: tuple[int, int, int, int]) -> None:
    """cutmix_ for arguments the caller has checked: layout, x.ndim >= 3, the box."""
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    y0, y1, x0, x1 = box
    status = (_library or load()).mixlab_cutmix(
        x.data_ptr(),
        x.element_size(),
        batch,
        x.numel() // (batch * height * width) if height * width else 0,
        height,
        width,
        perm.data_ptr(),
        y0,
        y1,
        x0,
        x1,
        _threads(x),
        TILE_BYTES,
        MIN_RUN_BYTES,
    )
    if status:
        _check(status, "cutmix_", batch)


def mix(x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """Out of place, in one pass: out[i] <- lam_i x[i] + (1 - lam_i) x[perm[i]] (x is left
    alone); the same arguments as `mix_`, the same bits as the reference."""
    perm = perm.contiguous()
    _check_layout(x, perm, lam)
    return mix_laid_out(x, perm, lam)


def mix_laid_out(x: torch.Tensor, perm: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """mix for arguments whose layout the caller has checked (mixlab.cpu_path)."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    batch = x.shape[0]
    per_sample = isinstance(lam, torch.Tensor)
    status = (_library or load()).mixlab_mix_out(
        out.data_ptr(),
        x.data_ptr(),
        _DTYPE_CODES[x.dtype],
        batch,
        x.numel() // batch,
        perm.data_ptr(),
        lam.data_ptr() if per_sample else None,
        0.0 if per_sample else lam,
        _threads(x),
    )
    if status:
        _check(status, "mix", batch)
    return out
