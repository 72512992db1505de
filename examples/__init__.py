"""Example microweb apps; each serves both protocols (see the module docstrings)."""
