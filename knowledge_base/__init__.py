"""knowledge_base package."""
import hotline.core.runtime  # noqa: F401  (thread settings before numpy/torch/faiss load)
