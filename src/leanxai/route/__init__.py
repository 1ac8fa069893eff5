"""Explanation-guided routing: complexity features of a probe's explanation."""

from leanxai.route.features import (
    FEATURE_NAMES,
    FeatureExtractor,
    complexity_features,
    probe_features,
)

__all__ = ["FEATURE_NAMES", "FeatureExtractor", "complexity_features", "probe_features"]
