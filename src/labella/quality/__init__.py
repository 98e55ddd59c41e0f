"""Label quality measures: inter-annotator agreement coefficients. Pure numpy, no DB or HTTP."""
