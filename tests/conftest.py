import os

# Two busy processes make PyTorch's OpenMP threads stall on a 2-core machine; tests run with one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
