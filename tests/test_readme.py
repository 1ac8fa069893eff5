"""README.md: its relative links resolve inside the repository, and its examples run."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXAMPLE_MARKER = "<!-- readme-example: {name} -->"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _relative_links(text: str) -> list[str]:
    links = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto:, an anchor in the page
        links.append(target.split("#", 1)[0])
    return links


def example(name: str, text: str | None = None) -> str:
    """The fenced ``python`` block right after ``<!-- readme-example: name -->``."""
    text = _readme() if text is None else text
    marker = _EXAMPLE_MARKER.format(name=name)
    assert text.count(marker) == 1, f"README.md must hold {marker!r} exactly once"
    after = text.split(marker, 1)[1]
    match = re.match(r"\s*```python\n(.*?)\n```", after, flags=re.DOTALL)
    assert match is not None, f"no ```python block right after {marker!r}"
    return match.group(1)


def test_link_parser_finds_links_and_skips_urls() -> None:
    text = (
        'see [a](docs/A.md), ![p](img/p.png "t"), [w](https://x.org/a.md), [s](#status), '
        "[b](docs/B.md#part)"
    )
    assert _relative_links(text) == ["docs/A.md", "img/p.png", "docs/B.md"]


def test_every_relative_link_points_to_a_file_in_the_repository() -> None:
    links = _relative_links(_readme())
    assert "docs/METRICS.md" in links and "docs/DESIGN.md" in links
    missing = []
    for link in links:
        path = (README.parent / link).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            missing.append(link)
    assert not missing, f"README.md links to files not in the repository: {missing}"


def test_readme_names_no_path_outside_the_repository() -> None:
    # The metric definitions and the design once lived in ../shared/, which a clone lacks.
    assert "../shared" not in _readme()
    assert "](../" not in _readme()


def test_example_extraction_takes_the_block_after_the_marker() -> None:
    text = "intro\n<!-- readme-example: demo -->\n```python\nx = 1\ny = 2\n```\nmore\n"
    assert example("demo", text) == "x = 1\ny = 2"
    with pytest.raises(AssertionError, match="exactly once"):
        example("other", text)


def test_route_own_models_example_runs_as_written() -> None:
    """The README's routing example between one's own models, run verbatim (about 30 s)."""
    code = example("route-own-models")
    namespace: dict[str, object] = {"__name__": "readme_example"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md:route-own-models", "exec"), namespace)
    assert re.fullmatch(
        r"accuracy \d\.\d{3}, heavy ran on \d+% of the inputs, \d+% of heavy's FLOPs\n",
        printed.getvalue(),
    ), printed.getvalue()
    result, test = namespace["result"], namespace["test"]
    labels = test.labels.numpy()  # type: ignore[attr-defined]
    assert result.prediction.shape == labels.shape  # type: ignore[attr-defined]
    # Routing works as the text says: most inputs stop at the probe, and the accuracy is the
    # heavy model's or close to it.
    accuracy = float(np.mean(result.prediction == labels))  # type: ignore[attr-defined]
    assert accuracy > 0.9
    assert 0.0 < float(np.mean(result.tier == 1)) < 0.9  # type: ignore[attr-defined]
