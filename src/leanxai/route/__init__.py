"""Explanation-guided routing: complexity features of a probe's explanation, and the tier router
that turns them into the smallest model tier likely to classify an input correctly."""

from leanxai.route.features import (
    FEATURE_NAMES,
    FeatureExtractor,
    complexity_features,
    probe_features,
)
from leanxai.route.routed import RoutedClassifier, RoutedResult, count_flops
from leanxai.route.router import TIERS, TierRouter, smallest_correct_tier

__all__ = [
    "FEATURE_NAMES",
    "TIERS",
    "FeatureExtractor",
    "RoutedClassifier",
    "RoutedResult",
    "TierRouter",
    "complexity_features",
    "count_flops",
    "probe_features",
    "smallest_correct_tier",
]
