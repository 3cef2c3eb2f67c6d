"""hotline: routing brain and assistant for a 12345 government-service hotline."""
__version__ = "0.1.0"
