"""The MLflow pyfunc logged with every registered version: embeds texts, images or arrays.

Input: a DataFrame with one optional column per modality of the model (the logged signature lists them):
``text`` (strings), an image modality such as ``image`` (base64 strings of an encoded PNG/JPEG/TIFF, or file
paths; raw ``bytes`` work in-process), an array modality (nested lists, with an optional ``<name>_mask``).
A row may leave a column empty (None) to embed only its other modalities.

Params (``params={"modality": ...}``, listed in the signature so ``mlflow models serve`` honours them):
``modality`` names the one column to embed; empty (the default) embeds every modality column present.

Output:
- one modality (named by ``params`` or the only modality column given): the L2-normalised embeddings as a
  ``float32`` array ``[N, D]``;
- several modality columns and no ``modality`` param: a DataFrame with one column ``<modality>_embedding``
  per modality given, each row a list of D floats (None where that row's input was empty). Served over
  REST this is ``{"predictions": [{"image_embedding": [...], "text_embedding": [...]}, ...]}``.

Imported only when registering or serving (mlflow is imported at module level here).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from clipzoo.core.data.formats import IMAGE_SUFFIXES
from clipzoo.core.registry.loading import PACKAGE_ARTIFACT

EMBEDDING_SUFFIX = "_embedding"


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


def _empty(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, which pandas puts in the missing cells of a mixed frame
    except (TypeError, ValueError):  # arrays compare element-wise: not missing
        return False


def signature_for(package_dir: str | Path):
    """The pyfunc's signature for a model package: one optional input column per modality, typed by its
    preprocess kind (text and base64/path images as strings, arrays as any nested list), and the
    ``modality`` param."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import AnyType

    from clipzoo.core.models.package import read_document

    columns = []
    for modality, spec in read_document(package_dir)["preprocess"].items():
        kind = spec.get("kind", "array") if isinstance(spec, dict) else "array"
        if kind in ("text", "image"):
            columns.append(ColSpec("string", modality, required=False))
        else:
            columns.append(ColSpec(AnyType(), modality, required=False))
            columns.append(ColSpec(AnyType(), f"{modality}_mask", required=False))
    params = ParamSchema([ParamSpec("modality", "string", "")])
    return ModelSignature(inputs=Schema(columns), params=params)


class ClipzooEmbedder(mlflow.pyfunc.PythonModel):
    """Embeds the modality columns of a frame with the model package stored in the version's artifacts."""

    def load_context(self, context) -> None:
        from clipzoo.core.models.inference import LoadedModel

        package = context.artifacts[PACKAGE_ARTIFACT]
        self.loaded = LoadedModel.from_package(package, uri=package)

    def _embed(self, modality: str, values: list[Any], masks: list[Any] | None):
        import numpy as np

        if modality == self.loaded.text_modality:
            return self.loaded.encode_texts([str(v) for v in values])
        if self.loaded.model.preprocess.get(modality, {}).get("kind") == "image":
            return self.loaded.encode_images([_image(v) for v in values], modality=modality)
        return self.loaded.encode_arrays(modality, [np.asarray(v, dtype=np.float32) for v in values], masks)

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        present = [c for c in frame.columns if c in self.loaded.modalities and not frame[c].map(_empty).all()]
        asked = (params or {}).get("modality") or None
        if asked is not None and asked not in present:
            raise ValueError(
                f"params modality={asked!r}, but the frame has no such non-empty column; this model embeds "
                f"{', '.join(self.loaded.modalities)}; got columns {list(frame.columns)}"
            )
        if not present:
            raise ValueError(
                f"give one column named after a modality of this model ({', '.join(self.loaded.modalities)}) "
                f"or params={{'modality': ...}}; got columns {list(frame.columns)}"
            )
        wanted = [asked] if asked else present
        if len(wanted) == 1:
            m = wanted[0]
            if frame[m].map(_empty).any():
                raise ValueError(f"column {m!r} has empty cells; give a value in every row, or several columns")
            masks = frame[f"{m}_mask"].tolist() if f"{m}_mask" in frame.columns else None
            return self._embed(m, frame[m].tolist(), masks)
        out = pd.DataFrame(index=frame.index)
        for m in wanted:
            rows = [i for i, v in enumerate(frame[m].tolist()) if not _empty(v)]
            values = [frame[m].iloc[i] for i in rows]
            masks = [frame[f"{m}_mask"].iloc[i] for i in rows] if f"{m}_mask" in frame.columns else None
            embedded = self._embed(m, values, masks)
            column: list[Any] = [None] * len(frame)
            for i, vector in zip(rows, embedded):
                column[i] = vector.tolist()
            out[m + EMBEDDING_SUFFIX] = column
        return out
