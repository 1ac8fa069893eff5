"""Real photos that ship inside scikit-image's wheel (``skimage/data``): nothing is downloaded.

The demo's photos, chosen for having one ImageNet object each before any model was run on them
(the CNN's answers and maps are in the README): Chelsea the cat, a cup of coffee, the astronaut
Eileen Collins, a rocket on its launch pad, a motorcycle, and the cameraman (a grey-scale
classic of image processing).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from leanxai.core.errors import InputError

__all__ = ["DEMO_PHOTOS", "photo_paths"]

DEMO_PHOTOS: tuple[str, ...] = (
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "camera.png",
)


def photo_paths(names: Sequence[str] = DEMO_PHOTOS) -> list[Path]:
    """Paths of scikit-image's photos ``names`` (file names in ``skimage/data``).

    Raises
    ------
    InputError
        scikit-image is not installed (``pip install scikit-image``), or a name is not one of
        its files.
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise InputError(
            "the demo photos come with scikit-image, which is not installed: "
            "pip install 'leanxai[baselines]' (or: pip install scikit-image)"
        )
    folder = Path(spec.origin).parent / "data"
    paths = [folder / name for name in names]
    missing = [str(path.name) for path in paths if not path.is_file()]
    if missing:
        raise InputError(f"scikit-image at {str(folder)!r} has no photo(s) {missing}")
    return paths
