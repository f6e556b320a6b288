"""Accuracy-aware INT8: calibrate, measure against the FP32 source, fall back the most sensitive
nodes until the drop is within ``--max-drop`` (see gate.py); backends in ort.py and openvino.py."""
