"""fakedet.runtime: run packaged detectors with numpy, Pillow and the backend asked for.

Importing it never imports torch (appliances and Jetsons have no room for it)."""

from .detector import Detector
from .prediction import Prediction
from .imageio import load_image
from .preprocess import preprocess, preprocess_image

__all__ = ["Detector", "Prediction", "load_image", "preprocess", "preprocess_image"]
