"""fakedet: fake-image detectors from training to calibrated engines on NVIDIA GPUs and Jetson."""

__version__ = "0.1.0"
