"""Measure explanations against the model's behaviour and against ground truth.

Definitions follow ``docs/METRICS.md``: faithfulness asks the model (:func:`deletion`,
:func:`insertion`, :func:`completeness`, :func:`max_sensitivity`); localisation compares a kept
region with a ground-truth mask (:func:`localization`, :func:`pointing_game`, :func:`pr_curve`);
:func:`paired_test` compares two methods on the same inputs; :func:`cost` times a call and
measures its peak memory. No metric compares an explanation with another explanation.
"""

from leanxai.evaluate.cost import Cost, cost
from leanxai.evaluate.faithfulness import (
    Completeness,
    Curve,
    completeness,
    deletion,
    deletion_curve,
    insertion,
    insertion_curve,
    max_sensitivity,
)
from leanxai.evaluate.localization import (
    PointingGame,
    PRCurve,
    localization,
    pointing_game,
    pr_curve,
)
from leanxai.evaluate.stats import PairedTest, format_p, paired_test

__all__ = [
    "Completeness",
    "Cost",
    "Curve",
    "PRCurve",
    "PairedTest",
    "PointingGame",
    "completeness",
    "cost",
    "deletion",
    "deletion_curve",
    "format_p",
    "insertion",
    "insertion_curve",
    "localization",
    "max_sensitivity",
    "paired_test",
    "pointing_game",
    "pr_curve",
]
