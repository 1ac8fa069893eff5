"""Tests of leanxai.evaluate.cost: structure and memory, never wall time."""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import tracemalloc
from typing import Any

import numpy as np
import pytest
import torch

from leanxai.core.errors import InputError
from leanxai.evaluate.cost import Cost, cost

# The module itself, whatever leanxai.evaluate re-exports under the same name.
cost_module = importlib.import_module("leanxai.evaluate.cost")

MB = 1_000_000
LINUX_RSS = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not cost_module._reset_peak_rss(),
    reason="needs a writable /proc/self/clear_refs",
)


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        self.calls += 1
        self.seen.append((args, kwargs))
        return self.calls


def allocate_200mb() -> float:
    array = np.ones(25_000_000)  # 200 MB of float64, every page written
    return float(array[::4096].sum())


def no_op() -> None:
    return None


@pytest.mark.parametrize(("repeats", "warmup"), [(1, 0), (3, 2), (10, 2)])
@pytest.mark.parametrize("memory", [True, False])
def test_call_counts(repeats: int, warmup: int, memory: bool) -> None:
    counter = Counter()
    result = cost(counter, repeats=repeats, warmup=warmup, memory=memory)
    assert isinstance(result, Cost)
    assert counter.calls == warmup + repeats + memory
    assert len(result.times_s) == repeats
    assert all(t >= 0 for t in result.times_s)
    assert result.median_s == statistics.median(result.times_s)
    assert result.result == counter.calls  # the last call's value


def test_default_counts_and_arguments_passed_on() -> None:
    counter = Counter()
    cost(counter, 1, "x", memory=False, scale=2.0)
    assert counter.calls == 12
    assert all(seen == ((1, "x"), {"scale": 2.0}) for seen in counter.seen)


def test_memory_off() -> None:
    result = cost(no_op, repeats=1, warmup=0, memory=False)
    assert result.peak_bytes is None
    assert result.memory_method == "not measured"


@LINUX_RSS
def test_peak_rss_of_a_200mb_array() -> None:
    big = cost(allocate_200mb, repeats=1, warmup=0)
    assert big.memory_method == (
        "peak RSS growth during one call (Linux VmHWM, reset via /proc/self/clear_refs)"
    )
    assert big.peak_bytes is not None and big.peak_bytes >= 150 * MB
    small = cost(no_op, repeats=1, warmup=0)
    assert small.peak_bytes is not None and small.peak_bytes < 20 * MB


def test_tracemalloc_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost_module, "_CLEAR_REFS", "/nonexistent/clear_refs")
    assert not tracemalloc.is_tracing()
    big = cost(allocate_200mb, repeats=1, warmup=0)
    assert big.memory_method.startswith("tracemalloc (Python allocations only")
    assert big.peak_bytes is not None and big.peak_bytes >= 150 * MB
    small = cost(no_op, repeats=1, warmup=0)
    assert small.peak_bytes is not None and small.peak_bytes < 1 * MB
    assert not tracemalloc.is_tracing()


def test_tracemalloc_stops_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost_module, "_CLEAR_REFS", "/nonexistent/clear_refs")
    calls = Counter()

    def fails_on_memory_call() -> None:
        calls()
        if calls.calls == 2:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cost(fails_on_memory_call, repeats=1, warmup=0)
    assert not tracemalloc.is_tracing()


def test_to_dict_leaves_out_result() -> None:
    values = cost(no_op, repeats=2, warmup=0).to_dict()
    assert set(values) == {"median_s", "times_s", "peak_bytes", "memory_method"}
    assert json.loads(json.dumps(values)) == values


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_memory() -> None:
    def allocate() -> torch.Tensor:
        return torch.ones(50_000_000, device="cuda").sum()  # 200 MB at the peak

    result = cost(allocate, repeats=2, warmup=1, device="cuda")
    assert result.memory_method.startswith("CUDA peak allocated")
    assert result.peak_bytes is not None and result.peak_bytes >= 150 * MB
    assert result.result.device.type == "cuda"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"repeats": 0}, InputError, "repeats must be >= 1"),
        ({"repeats": -3}, InputError, "repeats must be >= 1"),
        ({"warmup": -1}, InputError, "warmup must be >= 0"),
        ({"repeats": 2.5}, TypeError, "repeats must be an int"),
        ({"repeats": True}, TypeError, "repeats must be an int"),
        ({"warmup": None}, TypeError, "warmup must be an int"),
        ({"device": "nonsense"}, InputError, "device must name a torch device"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    counter = Counter()
    with pytest.raises(error, match=message):
        cost(counter, **kwargs)
    assert counter.calls == 0


def test_not_callable() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        cost(42)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
def test_cuda_device_without_cuda() -> None:
    with pytest.raises(InputError, match="CUDA is not available"):
        cost(no_op, device="cuda")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS needs Linux")
def test_peak_rss_is_not_hidden_by_memory_an_earlier_call_freed() -> None:
    # 16 blocks of 4 MB, below glibc's mmap threshold once it has grown: freed blocks stay in
    # the heap, so without giving them back a repeated call would reuse them and show no growth.
    def blocks() -> int:
        torch.ones(4 * 1024, 1024).sum()  # freeing a 16 MB mmap raises glibc's mmap threshold
        kept = [torch.ones(1024, 1024) for _ in range(16)]
        return len(kept)

    for _ in range(3):
        measured = cost(blocks, repeats=2, warmup=1, memory=True)
        assert measured.peak_bytes is not None
        assert measured.peak_bytes >= 0.8 * 64 * 2**20, measured.peak_bytes
