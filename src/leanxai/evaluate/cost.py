"""What one call costs: median wall time over repeats and the peak memory it adds.

:func:`cost` follows ``docs/METRICS.md`` (Cost): warm-up calls first, then the median of timed
repeats, and the memory of one further call with the method of measurement stated. For a
comparison of two functions, call :func:`cost` on each alternately in one process and report the
ratio of medians.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from leanxai.core.errors import InputError, InputTypeError

__all__ = ["Cost", "cost"]

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"

_RSS_METHOD = "peak RSS growth during one call (Linux VmHWM, reset via /proc/self/clear_refs)"
_TRACEMALLOC_METHOD = "tracemalloc (Python allocations only; misses torch's native allocations)"
_CUDA_METHOD = (
    "CUDA peak allocated growth during one call "
    "(torch.cuda.max_memory_allocated, reset via torch.cuda.reset_peak_memory_stats)"
)
_NO_METHOD = "not measured"


@dataclass(frozen=True)
class Cost:
    """The result of :func:`cost`.

    Attributes
    ----------
    median_s
        Median of ``times_s``, in seconds.
    times_s
        Wall time of each timed call, in seconds, in call order.
    peak_bytes
        Memory the memory call added at its peak (see ``memory_method``); ``None`` when memory
        was not measured.
    memory_method
        How ``peak_bytes`` was measured, in words, to report beside it.
    result
        Return value of the last call (the memory call when memory is measured), so a caller can
        check what was timed. Left out of ``repr``, comparisons and :meth:`to_dict`.
    """

    median_s: float
    times_s: tuple[float, ...]
    peak_bytes: int | None
    memory_method: str
    result: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the measurements (not ``result``) as a flat ``dict`` for CSV or JSON."""
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "result"
        }
        out["times_s"] = list(self.times_s)
        return out


def _count(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < least:
        raise InputError(f"{name} must be >= {least}, got {value}")
    return value


def _device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device must name a torch device, got {device!r}") from None


def _status_bytes(key: str) -> int:
    """Read a ``kB`` line such as ``VmHWM`` of ``/proc/self/status``, in bytes."""
    with open(_STATUS, encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{key} not found in {_STATUS}")


def _release_free_heap() -> None:
    """Give freed heap memory back to the system (glibc's ``malloc_trim``), so that a call's
    peak RSS growth counts memory it allocates even where an earlier call left freed memory the
    allocator would otherwise reuse unseen; a no-op without glibc."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS; False where that is not possible."""
    _release_free_heap()
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as clear:
            clear.write("5")
        _status_bytes("VmHWM")
    except OSError:
        return False
    return True


def cost(
    fn: Callable[..., Any],
    *args: Any,
    repeats: int = 10,
    warmup: int = 2,
    memory: bool = True,
    sync: bool | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> Cost:
    """Time ``fn(*args, **kwargs)`` and measure the memory one call adds.

    Parameters
    ----------
    fn : callable
        The function to measure, called as ``fn(*args, **kwargs)``.
    *args, **kwargs
        Its arguments. The names ``repeats``, ``warmup``, ``memory``, ``sync`` and ``device``
        belong to :func:`cost` and are not passed on.
    repeats : int, default 10
        Number of timed calls, ``>= 1``.
    warmup : int, default 2
        Number of untimed calls before them, ``>= 0``.
    memory : bool, default True
        Whether to make one further call and measure its peak memory.
    sync : bool, optional
        Call :func:`torch.cuda.synchronize` before starting and before stopping each clock, so
        that queued CUDA work is timed. Default: when ``device`` is a CUDA device.
    device : str or torch.device, optional
        Where the work runs. A CUDA device switches the memory measurement to the CUDA caching
        allocator's peak; anything else measures the process's resident memory.

    Returns
    -------
    Cost
        Median and individual times, peak bytes with the method, and the last return value.

    Raises
    ------
    TypeError
        If ``fn`` is not callable or ``repeats`` or ``warmup`` is not an int.
    ValueError
        If ``repeats < 1``, ``warmup < 0``, or ``device`` is CUDA and CUDA is not available.

    Notes
    -----
    Calls are made in this order: ``warmup`` untimed calls, ``repeats`` calls each timed with
    :func:`time.perf_counter`, then (with ``memory``) one untimed memory call. So ``fn`` runs
    ``warmup + repeats + memory`` times. The previous return value is released before each call.

    Memory, one of (reported in ``memory_method``):

    - CUDA ``device``: ``torch.cuda.max_memory_allocated`` after the call minus
      ``torch.cuda.memory_allocated`` before it, the peak reset with
      ``torch.cuda.reset_peak_memory_stats``. Tensors only, not the allocator's cached blocks.
    - Linux: the process's peak resident set (``VmHWM`` of ``/proc/self/status``) is reset to
      the current one by writing ``5`` to ``/proc/self/clear_refs``; ``peak_bytes`` is ``VmHWM``
      after the call minus ``VmRSS`` before it, the call's growth of resident memory at its peak,
      native allocations included. Memory the allocator kept from earlier calls and reuses is
      already resident and not counted, so this is a lower bound of what a first call needs.
    - elsewhere (``/proc/self/clear_refs`` not writable): the peak of :mod:`tracemalloc` during
      the call, which sees Python and NumPy allocations but not torch's native ones.

    Wall time includes Python overhead and, without ``sync``, only the launch of CUDA kernels.
    """
    if not callable(fn):
        raise InputTypeError(f"fn must be callable, got {type(fn).__name__}")
    repeats = _count(repeats, "repeats", 1)
    warmup = _count(warmup, "warmup", 0)
    cuda = device is not None and _device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise InputError(f"device is {str(device)!r} but CUDA is not available")
    synchronize = cuda if sync is None else bool(sync)

    def wait() -> None:
        if synchronize:
            torch.cuda.synchronize(device if cuda else None)

    result: Any = None
    for _ in range(warmup):
        result = None
        result = fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        result = None
        wait()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        wait()
        times.append(time.perf_counter() - start)

    peak: int | None = None
    method = _NO_METHOD
    if memory:
        result = None
        gc.collect()
        if cuda:
            wait()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            result = fn(*args, **kwargs)
            wait()
            peak, method = torch.cuda.max_memory_allocated(device) - before, _CUDA_METHOD
        elif _reset_peak_rss():
            before = _status_bytes("VmRSS")
            result = fn(*args, **kwargs)
            peak, method = _status_bytes("VmHWM") - before, _RSS_METHOD
        else:
            result, peak = _tracemalloc_peak(fn, args, kwargs)
            method = _TRACEMALLOC_METHOD
        peak = max(0, peak)
    return Cost(
        median_s=statistics.median(times),
        times_s=tuple(times),
        peak_bytes=peak,
        memory_method=method,
        result=result,
    )


def _tracemalloc_peak(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, int]:
    """Call ``fn`` once; return its value and the tracemalloc peak above the start."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        value = fn(*args, **kwargs)
        return value, tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()
