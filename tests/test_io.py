"""The one atomic writer, leanxai.io: consent to replace, the umask's permissions, no leftovers."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from torch import nn

from leanxai.core.errors import InputTypeError, OutputExistsError
from leanxai.io import (
    atomic_save_npy,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
)


@pytest.fixture
def umask():
    """Set the process umask for one test; restored after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


WRITERS = {
    "atomic_write": lambda path: atomic_write(path, lambda handle: handle.write(b"x")),
    "atomic_write_bytes": lambda path: atomic_write_bytes(path, b"bytes"),
    "atomic_write_text": lambda path: atomic_write_text(path, "text"),
    "atomic_save_npy": lambda path: atomic_save_npy(path, np.arange(3)),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_permissions_of_the_umask(tmp_path, umask, writer, mask, expected):
    umask(mask)
    path = WRITERS[writer](tmp_path / "sub" / "out.bin")
    assert mode(path) == expected
    with open(tmp_path / "reference", "w") as handle:  # what open() gives, for comparison
        handle.write("x")
    assert mode(tmp_path / "reference") == expected


def test_the_zoo_cache_gets_the_permissions_of_the_umask(tmp_path, umask):
    from leanxai.zoo.train import load_cached

    umask(0o022)
    model, metadata = load_cached(
        "tiny",
        lambda: nn.Linear(2, 2),
        lambda: (nn.Linear(2, 2), {"note": "test"}),
        "v0",
        cache_dir=tmp_path,
    )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["tiny-v0.json", "tiny-v0.safetensors"]  # no temporary left
    assert all(mode(tmp_path / name) == 0o644 for name in files)
    cached, again = load_cached(
        "tiny",
        lambda: nn.Linear(2, 2),
        lambda: pytest.fail("the cache must be read, not retrained"),
        "v0",
        cache_dir=tmp_path,
    )
    assert again["weights_sha256"] == metadata["weights_sha256"]
    assert torch.equal(cached.weight, model.weight)


def test_the_router_file_gets_the_permissions_of_the_umask(tmp_path, umask):
    from leanxai.route.router import TierRouter, load_router, save_router

    umask(0o022)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 7))
    labels = (features[:, 0] > 0).astype(np.int64)
    router = TierRouter(n_tiers=2, random_state=0).fit(features, labels)
    path = save_router(router, tmp_path / "router.safetensors", features, labels)
    assert mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["router.safetensors"]
    with pytest.raises(OutputExistsError):
        save_router(router, path, features, labels)
    load_router(path)


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_no_temporary_and_the_old_file(tmp_path, error):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def write(handle):
        handle.write(b"half of the new conte")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, write, overwrite=True)
    assert path.read_text() == "old"
    with pytest.raises(type(error)):
        atomic_write(tmp_path / "new.txt", write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_existing_files_are_not_replaced_without_consent(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("mine")
    calls = []
    with pytest.raises(OutputExistsError) as caught:
        atomic_write(path, calls.append)
    assert calls == []  # refused before any work
    assert path.read_text() == "mine"
    assert str(caught.value) == f"1 output file already exists; not replaced: {path}"
    assert caught.value.paths == (str(path),)
    assert isinstance(caught.value, FileExistsError)
    atomic_write_text(path, "new", overwrite=True)
    assert path.read_text() == "new"


def test_a_file_that_appears_while_writing_is_not_clobbered(tmp_path):
    path = tmp_path / "out.txt"

    def write(handle):
        handle.write(b"ours")
        path.write_text("theirs")  # another process wins the race

    with pytest.raises(OutputExistsError) as caught:
        atomic_write(path, write)
    assert path.read_text() == "theirs"
    assert caught.value.paths == (str(path),)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_check_writable_names_the_files_and_keeps_folders_apart(tmp_path):
    paths = [tmp_path / f"f{i}.txt" for i in range(7)]
    for path in paths:
        path.write_text("x")
    with pytest.raises(OutputExistsError) as caught:
        check_writable([*paths, tmp_path / "free.txt"], overwrite=False)
    message = str(caught.value)
    assert message.startswith("7 output files already exist; not replaced: ")
    assert message.endswith(" and 2 more") and "overwrite" not in message
    assert caught.value.paths == tuple(str(path) for path in paths)
    with pytest.raises(OutputExistsError, match="existing folder") as caught:
        check_writable([tmp_path], overwrite=True)
    assert caught.value.paths == ()  # replacing would not help


def test_bad_arguments_are_leanxai_type_errors(tmp_path):
    for call in (
        lambda: atomic_write(tmp_path / "a", b"not a callable"),
        lambda: atomic_write_bytes(tmp_path / "a", "text"),
        lambda: atomic_write_text(tmp_path / "a", b"bytes"),
        lambda: atomic_save_npy(tmp_path / "a", [1, 2]),
        lambda: atomic_save_npy(tmp_path / "a", np.array([object()])),
    ):
        with pytest.raises(InputTypeError):
            call()
    assert list(tmp_path.iterdir()) == []
