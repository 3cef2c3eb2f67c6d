"""api package."""
import hotline.runtime  # noqa: F401  (thread settings before numpy/torch/faiss load)
