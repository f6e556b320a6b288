"""``edgeopt verify-target OUT --arch aarch64``: OUT's artifacts run on another CPU architecture.

Layout: ``sysroot`` (qemu user-mode emulation and an aarch64 Python with the aarch64 wheels of
numpy / onnxruntime / openvino, installed once into a cache folder), ``child`` (what runs inside
the emulated Python: the device runtime's engines on the golden inputs), ``verify`` (golden inputs,
this machine's outputs, the comparison and the verdict written into OUT/manifest.json).
"""
