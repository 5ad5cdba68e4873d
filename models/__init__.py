"""Manifest of known model files (read by ``lodevec model pull``)."""
