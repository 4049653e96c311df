"""facesieve: clean face-recognition training datasets."""

__version__ = "0.1.0"
