"""The MLflow pyfunc logged with every registered version: embeds texts, images or arrays.

``mlflow.pyfunc.load_model("models:/NAME/VERSION").predict(df, params={"modality": ...})`` takes a
DataFrame with one column named after the modality (``text``: strings; ``image``: file paths,
raw bytes or base64 strings of an encoded image; an array modality: nested lists, with an optional
``<name>_mask`` column) and returns the L2-normalised embeddings as a ``float32`` array ``[N, D]``.
Without ``params`` the single modality column present is used.

Imported only when registering or serving (mlflow is imported at module level here).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import mlflow.pyfunc

from clipzoo.core.data.formats import IMAGE_SUFFIXES
from clipzoo.core.registry.loading import PACKAGE_ARTIFACT


def _image(value: Any):
    from PIL import Image

    if isinstance(value, str):
        if value.startswith(("/", "./", "file:")) or value.lower().endswith(IMAGE_SUFFIXES):
            path = value[len("file://"):] if value.startswith("file://") else value
            with Image.open(path) as img:
                return img.convert("RGB")
        value = base64.b64decode(value)
    with Image.open(io.BytesIO(value)) as img:
        return img.convert("RGB")


class ClipzooEmbedder(mlflow.pyfunc.PythonModel):
    """Embeds one modality per call with the model package stored in the version's artifacts."""

    def load_context(self, context) -> None:
        from clipzoo.core.registry.loading import LoadedModel

        self.loaded = LoadedModel.from_package(context.artifacts[PACKAGE_ARTIFACT], uri=context.artifacts[PACKAGE_ARTIFACT])

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import numpy as np
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        modalities = [c for c in frame.columns if c in self.loaded.modalities]
        modality = (params or {}).get("modality") or (modalities[0] if len(modalities) == 1 else None)
        if modality is None or modality not in frame.columns:
            raise ValueError(
                f"give one column named after a modality of this model ({', '.join(self.loaded.modalities)}) "
                f"or params={{'modality': ...}}; got columns {list(frame.columns)}"
            )
        values = frame[modality].tolist()
        if modality == self.loaded.text_modality:
            return self.loaded.encode_texts([str(v) for v in values])
        if self.loaded.model.preprocess.get(modality, {}).get("kind") == "image":
            return self.loaded.encode_images([_image(v) for v in values], modality=modality)
        masks = frame[f"{modality}_mask"].tolist() if f"{modality}_mask" in frame.columns else None
        return self.loaded.encode_arrays(modality, [np.asarray(v, dtype=np.float32) for v in values], masks)
