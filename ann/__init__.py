"""ann: Asymmetric Non-local Networks for semantic segmentation."""

import os

# albumentations asks PyPI for a newer version on every import: a network call
# per process (and DataLoader worker), and a warning on offline or proxied hosts.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
