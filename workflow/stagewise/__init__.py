"""stagewise: staged, reproducible transfer learning of pretrained PyTorch models."""

__version__ = "0.1.0"
