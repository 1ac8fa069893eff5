"""Explainers, one module per family."""

from leanxai.explainers.deepactif import DeepACTIF, FeatureAttribution, feature_ranking

__all__ = ["DeepACTIF", "FeatureAttribution", "feature_ranking"]
