"""Training LUT models in torch (never imported by the lutsr runtime)."""
