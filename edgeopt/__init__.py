"""edgeopt: take trained PyTorch models to edge devices fast and without losing quality.

Importing this package is cheap: heavy libraries (torch, onnxruntime, openvino, tensorrt)
are imported only inside the functions that use them.
"""

__version__ = "0.1.0"
