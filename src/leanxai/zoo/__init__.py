"""Small reference architectures and their training recipes.

``demo_cnn`` builds the demo model's architecture; ``load_demo_model`` returns it trained (cached
after the first call, about 45 s on two CPU cores). ``pretrained("efficientnet_lite0")`` returns
EfficientNet-Lite0 with its published ImageNet weights (the ``[pretrained]`` extra); its module is
``leanxai.zoo.pretrained``, which this function's name shadows as an attribute of the package
(``importlib.import_module("leanxai.zoo.pretrained")`` still returns the module).
"""

from leanxai.zoo.cnn import SmallCNN, VGGStyle
from leanxai.zoo.efficientnet_lite import EfficientNetLite0
from leanxai.zoo.pretrained import PRETRAINED, imagenet_classes, pretrained
from leanxai.zoo.train import demo_cnn, fit_classifier, load_demo_model, train_demo_model

__all__ = [
    "PRETRAINED",
    "EfficientNetLite0",
    "SmallCNN",
    "VGGStyle",
    "demo_cnn",
    "fit_classifier",
    "imagenet_classes",
    "load_demo_model",
    "pretrained",
    "train_demo_model",
]
