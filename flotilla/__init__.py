"""Flotilla's bottom layer: what every other package may import (version, the error taxonomy).

Nothing here imports another Flotilla package (the import contracts in pyproject.toml say so).
"""

__version__ = "0.1.0"
