"""Deployment: versioned SavedModels for TF Serving (export.py), checked in a fresh process (check.py), the
publishing gate (gate.py), LiteRT files for phones (litert.py, phone_inputs.py), TF Serving's REST formats
(rest.py), each served model's one metric (scores.py), and mixed-precision models' float32 copies (precision.py)."""
