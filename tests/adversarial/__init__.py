"""Adversarial tests: hostile inputs and tampered artifacts, each refused in one line."""
