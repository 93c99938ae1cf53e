"""Private helpers: validation, logging, result keys and shared docstring pieces."""
