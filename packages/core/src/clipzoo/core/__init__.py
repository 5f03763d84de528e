"""clipzoo core: contrastive model factory, losses, trainer, shards, registry and benchmarks.

Kept import-light: ``import clipzoo.core`` must not import torch or mlflow.
"""

__version__ = "0.1.0"


def load(model_uri: str, **kwargs):
    """Load a registered model (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``) ready to use.

    The registry resolves the reference (or takes a model folder as is) to a model package folder, and the model
    layer loads it: a :class:`clipzoo.core.models.LoadedModel` with the model, its preprocessing and tokenizer.
    """
    from clipzoo.core.registry import load_model

    return load_model(model_uri, **kwargs)
