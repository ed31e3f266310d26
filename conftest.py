"""pytest setup for tests/ and scripts/verify_*.py."""

import torch

# One torch thread: on 2 shared cores, OpenMP's spin-waiting threads made small-model tests up to ~17x slower.
torch.set_num_threads(1)
