"""File and member extensions the project reads, in one place (no heavy imports: ingest sources use it too).

``IMAGE_EXTENSIONS`` are the image encodings PIL decodes for us, as input files (``retina.JPG``) and as shard
members (``KEY.jpg``, ``KEY.image.png``); webdataset's image decoder handles every one of them. Arrays
(``KEY.image.npy``) are not images to PIL and are listed apart.
"""

from __future__ import annotations

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif")
IMAGE_SUFFIXES = tuple(f".{ext}" for ext in IMAGE_EXTENSIONS)  # for Path.suffix.lower() checks
ARRAY_EXTENSIONS = ("npy",)
