"""digitcli: read handwritten digits from image files with a small, safe MLP."""

__version__ = "0.1.0"
