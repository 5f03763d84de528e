"""Resolve a model reference to a model package folder: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a folder.

The registry's part of loading is finding the folder: a registered version's model package is downloaded
once into ``<CLIPZOO_HOME>/models/<store>/<name>/<version>`` (versions are immutable) and
:func:`resolve_package` returns its path with what the registry knows about it. The model layer loads that
folder (:class:`clipzoo.core.models.inference.LoadedModel`); :func:`load_model` does both in one call and is
what ``clipzoo.core.load`` runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipzoo.core.models import package as model_package
from clipzoo.core.registry.errors import RegistryError

if TYPE_CHECKING:
    from clipzoo.core.models.inference import LoadedModel

log = logging.getLogger(__name__)

PACKAGE_ARTIFACT = "package"  # the model package's folder inside the logged pyfunc's artifacts
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?/?$")


@dataclass
class ModelRef:
    """A parsed reference: a registered ``name`` with ``version`` or ``alias``, or a local ``path``."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        if self.path is not None:
            return str(self.path)
        return f"{self.name}/{self.version}" if self.version else self.uri


def parse_ref(ref: str | os.PathLike) -> ModelRef:
    text = str(ref)
    if text.startswith("models:/"):
        match = _URI.match(text)
        if not match:
            raise RegistryError(f"bad model URI {text!r}: use models:/NAME@ALIAS, models:/NAME/VERSION or a model folder")
        return ModelRef(uri=text, name=match["name"], version=match["version"], alias=match["alias"])
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelRef(uri=text, path=path.resolve())
    raise RegistryError(
        f"{text!r} is neither a model folder nor a registry URI (models:/NAME@ALIAS, models:/NAME/VERSION)"
    )


def resolve_version(ref: ModelRef, client, store_uri: str) -> Any:
    """The ``ModelVersion`` a registry reference points at; errors list what exists instead."""
    from mlflow.exceptions import MlflowException

    names = [m.name for m in client.search_registered_models(max_results=1000)]
    if ref.name not in names:
        raise RegistryError(
            f"no registered model {ref.name!r} in {store_uri}; registered: {', '.join(sorted(names)) or 'none'}"
        )
    versions = client.search_model_versions(f"name = '{ref.name}'", max_results=10000)
    if ref.alias:
        try:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        except MlflowException:
            aliases = sorted(client.get_registered_model(ref.name).aliases or {})
            raise RegistryError(
                f"model {ref.name!r} has no alias {ref.alias!r}; aliases: {', '.join(aliases) or 'none'}"
            ) from None
    if ref.version is None:  # models:/NAME: the newest version
        return max(versions, key=lambda v: int(v.version))
    for v in versions:
        if str(v.version) == str(ref.version):
            return v
    known = sorted(int(v.version) for v in versions)
    raise RegistryError(f"model {ref.name!r} has no version {ref.version}; versions: {', '.join(map(str, known))}")


def _cache_root(tracking: str) -> Path:
    from clipzoo.core.registry.store import clipzoo_home

    store = hashlib.sha256(tracking.encode()).hexdigest()[:12]
    return clipzoo_home() / "models" / store


def _package_in(model_dir: Path) -> Path | None:
    """The model package folder inside a downloaded pyfunc model (its MLmodel names the artifact's path)."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        return None
    spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    artifacts = (spec.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
    rel = (artifacts.get(PACKAGE_ARTIFACT) or {}).get("path")
    package = (model_dir / rel).resolve() if rel else None
    if package is None or not package.is_relative_to(model_dir.resolve()):  # an absolute or '..' path: not ours
        return None
    return package if model_package.is_package(package) else None


_IDENTITY = "clipzoo-version.json"  # beside the downloaded model: which registered version the folder holds


def _identity(version, source: str) -> dict[str, Any]:
    """What tells two registered versions apart when store URI, name and version number agree (a store deleted and
    rebuilt at the same URI): the run that logged the model, its artifact URI and the weights hash tag."""
    return {"run_id": version.run_id, "source": source, "weights_sha256": version.tags.get("weights_sha256")}


def _cached(target: Path, identity: dict[str, Any]) -> Path | None:
    try:
        same = json.loads((target / _IDENTITY).read_text(encoding="utf-8")) == identity
    except (OSError, ValueError):
        return None
    return _package_in(target) if same else None


def download_package(version, client, tracking: str) -> Path:
    """The model package folder of a registered version, downloaded once (atomically) into the cache.

    A cached folder is used only while it holds the same registered version (:func:`_identity`); otherwise it is
    downloaded again.
    """
    import mlflow.artifacts

    target = _cache_root(tracking) / version.name / str(version.version)
    source = client.get_model_version_download_uri(version.name, str(version.version))
    identity = _identity(version, source)
    found = _cached(target, identity)
    if found is not None:
        return found
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=tracking))
        if _package_in(model_dir) is None:
            raise RegistryError(
                f"version {version.version} of {version.name!r} holds no clipzoo model package ({source}); "
                "was it registered with 'clipzoo registry register'?"
            )
        (model_dir / _IDENTITY).write_text(json.dumps(identity), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)  # a partial folder left by a crashed process, or another version
        try:
            os.replace(model_dir, target)
        except OSError:  # another process finished the same download first
            if _cached(target, identity) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _package_in(target)


@dataclass(frozen=True)
class ResolvedPackage:
    """A model package folder and what the registry knows about it (nothing for a local folder)."""

    path: Path
    uri: str
    name: str | None = None
    version: Any = None  # the registry's ModelVersion
    tracking_uri: str | None = None
    weights_sha256: str | None = None  # the version's tag; None: the loader hashes the weights file
    info: dict[str, Any] = field(default_factory=dict)


def resolve_package(ref: str | os.PathLike, *, tracking_uri: str | None = None) -> ResolvedPackage:
    """The package folder behind ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` (newest)
    or a local folder (taken as is)."""
    parsed = parse_ref(ref)
    if parsed.path is not None:
        return ResolvedPackage(path=parsed.path, uri=parsed.uri)
    from clipzoo.core.registry import store

    uri = store.tracking_uri(tracking_uri)
    client = store.get_client(uri)
    version = resolve_version(parsed, client, uri)
    package = download_package(version, client, uri)
    log.info("resolved %s (version %s) from %s", parsed.uri, version.version, uri)
    return ResolvedPackage(
        path=package,
        uri=parsed.uri,
        name=version.name,
        version=version,
        tracking_uri=uri,
        weights_sha256=version.tags.get("weights_sha256"),
        info={"tags": dict(version.tags), "aliases": list(version.aliases)},
    )


def load_model(ref: str | os.PathLike, *, tracking_uri: str | None = None, device: str | None = None) -> LoadedModel:
    """A model ready to use from a reference: the registry resolves it to a folder, the model layer loads that."""
    from clipzoo.core.models.inference import LoadedModel

    resolved = resolve_package(ref, tracking_uri=tracking_uri)
    return LoadedModel.from_package(
        resolved.path, uri=resolved.uri, device=device, name=resolved.name, version=resolved.version,
        tracking_uri=resolved.tracking_uri, weights_sha256=resolved.weights_sha256, info=resolved.info,
    )
