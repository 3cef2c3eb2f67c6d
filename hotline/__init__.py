"""hotline: routing brain and assistant for a 12345 government-service hotline."""
from hotline.core import runtime as _runtime  # noqa: F401  (thread settings first)

__version__ = "0.1.0"
