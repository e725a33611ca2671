"""nnxlint's rules, one module per rule (installed as ``nnxlint.rules``)."""
