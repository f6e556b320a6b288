"""Accuracy-aware INT8: calibrate, measure against the FP32 source, fall back the most sensitive
nodes until the drop is within ``--max-drop``.

Layout: ``int8`` (the entry point, quantize_int8), ``ladder`` (Rung, LadderContext, the loop and
the speed check), ``ort_rungs`` / ``openvino_rungs`` (each runtime's ordered rungs), ``candidate``
(the typed record of what a rung built), ``accuracy_gate`` (Scorer, the fallback search),
``speed`` (timing against FP32), and the building blocks: ``ort`` and ``openvino_nncf``
(the libraries' quantizers), ``per_token``, ``smooth``, ``qdq``."""
