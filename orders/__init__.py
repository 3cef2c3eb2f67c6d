"""Work orders: intake to archive, with every step recorded."""
import hotline.core.runtime  # noqa: F401  (thread settings before numpy/torch/faiss load)
