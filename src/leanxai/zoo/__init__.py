"""Small reference architectures and their training recipes.

``demo_cnn`` builds the demo model's architecture; ``load_demo_model`` returns it trained (cached
after the first call, about 45 s on two CPU cores).
"""

from leanxai.zoo.cnn import SmallCNN, VGGStyle
from leanxai.zoo.train import demo_cnn, fit_classifier, load_demo_model, train_demo_model

__all__ = [
    "SmallCNN",
    "VGGStyle",
    "demo_cnn",
    "fit_classifier",
    "load_demo_model",
    "train_demo_model",
]
