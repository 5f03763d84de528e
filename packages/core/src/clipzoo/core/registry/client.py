"""Register model packages as MLflow model versions; list, show and promote them.

A registered version holds (in its logged pyfunc's artifacts) the whole model package folder:
``config.json`` (architecture + preprocessing + tokenizer settings), ``model.safetensors``, the
trainer's ``train_summary.json`` and ``model_card.md``. Its tags carry ``domain``, ``architecture``,
``data_fingerprint``, ``weights_sha256``, ``modalities``, ``licenses`` and, once benchmarked,
``bench/<task>/<metric>`` scores with ``bench/<task>/primary`` naming the task's headline metric
(``bench_run/<task>`` is the MLflow run that produced them), ``bench_fingerprint/<task>`` (the hash of the
task's resolved options and its test data), ``bench_options/<task>`` (those options, JSON) and
``bench_stats/<task>`` (JSON: test items, bootstrap settings, 95% intervals and chance levels).

Guarded aliases (``champion`` by default, see ``registry/model_cards/settings.yaml``) move only to a version
whose headline score is at least the current holder's on every benchmark both have run, and only where
both scores have the same fingerprint (same data, same options): a score on other data or options is no
evidence either way, so promotion refuses and says which option differs. The decision also says whether
the candidate's score lies outside the holder's 95% interval (a distinguishable difference) or inside it.
An indistinguishable gain or a tie still promotes: the guard asks "no worse than the champion", and
demanding a significant gain would let one lucky champion score block every equal successor. ``force``
overrides a refusal and leaves a ``promotion_override/<alias>`` tag saying so.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from clipzoo.core.registry import settings as registry_settings
from clipzoo.core.registry.errors import PromotionRefused

log = logging.getLogger(__name__)

BENCH_TAG = "bench/"
FINGERPRINT_TAG = "bench_fingerprint/"
OPTIONS_TAG = "bench_options/"
STATS_TAG = "bench_stats/"
RUN_TAG = "bench_run/"
DETAIL_TAGS = (FINGERPRINT_TAG, OPTIONS_TAG, STATS_TAG)
MAX_DESCRIPTION = 5000
MAX_TAG = 5000  # MLflow's limit on a model-version tag value


# -- benchmark tags ------------------------------------------------------------------------------------
def _json_tag(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


CUT_MARK = " ...[cut at MLflow's tag limit; the full value is in the version's run artifacts]"


def _clipped(text: str) -> str:
    """``text`` within MLflow's tag limit, saying so where it was cut (a cut JSON or list must not pass as whole)."""
    return text if len(text) <= MAX_TAG else text[: MAX_TAG - len(CUT_MARK)] + CUT_MARK


def _stats_tag(detail: dict[str, Any], primary: str | None) -> str:
    """``bench_stats`` JSON; if it would pass MLflow's tag limit, only the headline metric's interval and chance."""
    stats = {k: detail[k] for k in ("n_items", "support", "counts", "bootstrap", "interval", "chance") if k in detail}
    text = _json_tag(stats)
    if len(text) > MAX_TAG:
        for k in ("interval", "chance", "support"):
            stats[k] = {m: v for m, v in (stats.get(k) or {}).items() if m == primary}
        text = _json_tag(stats)
    return text


def bench_tags(results: dict[str, dict[str, float]], primary: dict[str, str],
               details: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Version tags for benchmark ``results`` ``{task: {metric: value}}``, their headline metrics and ``details``.

    ``details[task]`` (what :func:`clipzoo.core.bench.harness.bench_details` keeps): ``fingerprint``,
    ``options`` and ``settings`` (the resolved options), ``n_items``, ``counts`` (facts about the scored data such
    as ``image_location_pairs``: kept with the task's details, not as metric tags), ``support`` (the items each
    metric rests on), ``bootstrap``, ``interval``, ``chance``.
    """
    tags = {}
    for task, metrics in results.items():
        for metric, value in metrics.items():
            tags[f"{BENCH_TAG}{task}/{metric}"] = repr(float(value))
        if task in primary:
            tags[f"{BENCH_TAG}{task}/primary"] = primary[task]
        detail = (details or {}).get(task)
        if detail:
            if detail.get("fingerprint"):
                tags[f"{FINGERPRINT_TAG}{task}"] = str(detail["fingerprint"])
            if "options" in detail:
                tags[f"{OPTIONS_TAG}{task}"] = _clipped(_json_tag(detail["options"]))
            tags[f"{STATS_TAG}{task}"] = _stats_tag(detail, primary.get(task))
    return tags


def read_bench_tags(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{task: {"metrics", "primary", "fingerprint", "options", "n_items", "interval", "chance", ...}}`` from tags.

    ``fingerprint`` is ``None`` for a score recorded without one (older versions, a hand-attached score).
    """
    out: dict[str, dict[str, Any]] = {}

    def entry(task: str) -> dict[str, Any]:
        return out.setdefault(task, {"metrics": {}, "primary": None, "fingerprint": None, "options": None,
                                     "n_items": None, "counts": {}, "interval": {}, "chance": {}, "bootstrap": None})

    for key, value in tags.items():
        if key.startswith(BENCH_TAG):
            task, _, metric = key[len(BENCH_TAG):].rpartition("/")
            if metric == "primary":
                entry(task)["primary"] = value
            elif metric == "run_id":  # older versions kept the run here
                entry(task)["run_id"] = value
            else:
                entry(task)["metrics"][metric] = float(value)
    for key, value in tags.items():  # details only of tasks that have scores
        prefix = next((p for p in DETAIL_TAGS if key.startswith(p)), None)
        task = key[len(prefix):] if prefix else None
        if task not in out:
            continue
        if prefix == FINGERPRINT_TAG:
            out[task]["fingerprint"] = value
        elif prefix == OPTIONS_TAG:
            out[task]["options"] = _loads(value)
        else:
            stats = _loads(value) or {}
            out[task].update({k: stats[k] for k in ("n_items", "support", "counts", "interval", "chance", "bootstrap")
                              if k in stats})
    return out


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # a tag trimmed at MLflow's limit
        return None


def headline_scores(tags: dict[str, str]) -> dict[str, tuple[str, float]]:
    """``{task: (primary metric, value)}`` of a version."""
    out = {}
    for task, entry in read_bench_tags(tags).items():
        metric = entry["primary"]
        if metric and metric in entry["metrics"]:
            out[task] = (metric, entry["metrics"][metric])
    return out


def attach_benchmark(name: str, version: str | int, results: dict[str, dict[str, float]], primary: dict[str, str],
                     *, tracking_uri: str | None = None, run_id: str | None = None,
                     details: dict[str, dict[str, Any]] | None = None) -> None:
    """Record benchmark results on a registered version (tags; ``run_id`` names the MLflow run).

    A task's earlier tags are removed first, so a re-run never leaves metrics or a fingerprint of the
    previous run beside the new ones.
    """
    from clipzoo.core.registry import store

    client = store.get_client(tracking_uri)
    old = dict(client.get_model_version(name, str(version)).tags)
    for task in results:
        stale = [k for k in old if k.startswith(f"{BENCH_TAG}{task}/")
                 or k in {f"{p}{task}" for p in (*DETAIL_TAGS, RUN_TAG)}]
        for key in stale:
            client.delete_model_version_tag(name, str(version), key)
    for key, value in bench_tags(results, primary, details).items():
        client.set_model_version_tag(name, str(version), key, value)
    if run_id:
        for task in results:
            client.set_model_version_tag(name, str(version), f"{RUN_TAG}{task}", run_id)


def refresh_card(name: str, version: str | int, package_dir: str | os.PathLike, *, tracking_uri: str | None = None) -> str:
    """Re-render a version's model card with every benchmark result now on its tags; set it as its description."""
    from clipzoo.core.registry import store
    from clipzoo.core.registry.card import read_package, render_model_card

    client = store.get_client(tracking_uri)
    mv = client.get_model_version(name, str(version))
    entries = read_bench_tags(dict(mv.tags))
    benchmarks = {t: e["metrics"] for t, e in entries.items()}
    info = read_package(package_dir, domain=mv.tags.get("domain"))
    card = render_model_card(info, name=name, version=mv.version, benchmarks=benchmarks, bench_details=entries)
    client.update_model_version(name, str(mv.version), description=_trim(card))
    return card


# -- registration ---------------------------------------------------------------------------------------
def _flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value, default=str)[:6000] if not isinstance(value, str) else value[:6000]
    return out


def _version_tags(info) -> dict[str, str]:
    licenses = info.licenses
    total = [d.num_samples for d in info.datasets]
    train_run = info.summary.get("mlflow_run_id")
    preprocess = {f"preprocess/{m}": _clipped(_json_tag(spec))
                  for m, spec in info.preprocess.items()}  # size, channels/bands, mean/std, tokenizer per modality
    return {
        **({"train_run_id": str(train_run)} if train_run else {}),
        **preprocess,
        "domain": info.domain,
        "architecture": info.architecture,
        "data_fingerprint": info.data_fingerprint,
        "weights_sha256": info.weights_sha256,
        "modalities": ",".join(info.modalities),
        "embed_dim": str(info.config.get("embed_dim", "")),
        "licenses": ",".join(licenses) if licenses else "unknown",
        "train_samples": str(sum(total)) if total and None not in total else "unknown",
        "decontaminated_against": _clipped(info.decontamination),
    }


def _ensure_registered_model(client, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException:
        pass
    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:  # created by another process in between
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
            raise


def register_model(
    package_dir: str | os.PathLike,
    name: str,
    *,
    aliases: tuple[str, ...] | list[str] = (),
    tracking_uri: str | None = None,
    experiment: str | None = None,
    benchmarks: dict[str, dict[str, float]] | None = None,
    primary: dict[str, str] | None = None,
    extra_tags: dict[str, str] | None = None,
    card_template: str | os.PathLike | None = None,
    domain: str | None = None,
) -> int:
    """Log the model package at ``package_dir`` and register it as a new version of ``name``; return the version.

    ``benchmarks``/``primary`` record results already known (e.g. from the trainer); ``aliases`` are
    set afterwards through :func:`promote` (so ``champion`` obeys the promotion rule). ``domain``
    overrides the summary's (or the data sources') domain.
    """
    import mlflow

    from clipzoo.core.registry import store
    from clipzoo.core.models.package import SUMMARY_NAME
    from clipzoo.core.registry.card import read_package, render_model_card
    from clipzoo.core.registry.pyfunc import ClipzooEmbedder

    info = read_package(package_dir, domain=domain)
    conf = registry_settings.settings()
    experiment = experiment or conf.get("experiments", {}).get("register", "clipzoo-registry")
    uri = store.setup_mlflow(tracking_uri, experiment=experiment)
    client = store.get_client(uri)
    tags = {**_version_tags(info), **(extra_tags or {})}
    render_model_card(info, name=name, benchmarks=benchmarks, template=card_template)  # template errors fail here, before logging

    with mlflow.start_run(run_name=f"register {name}") as run:
        mlflow.set_tags({**tags, "clipzoo.kind": "register", "clipzoo.model_name": name})
        params = _flatten("", info.training_config, {})
        for i in range(0, min(len(params), 500), 100):  # MLflow takes at most 100 params per batch
            mlflow.log_params(dict(list(params.items())[i:i + 100]))
        mlflow.log_dict(info.config, "package/config.json")
        if info.summary:
            mlflow.log_dict(info.summary, f"package/{SUMMARY_NAME}")
        model_info = _log_pyfunc(mlflow, ClipzooEmbedder, package_dir, conf, tags)
        _ensure_registered_model(client, name, f"clipzoo {info.domain} model ({info.architecture}).")
        same = [v.version for v in client.search_model_versions(f"name = '{name}'", max_results=10000)
                if v.tags.get("weights_sha256") == info.weights_sha256]
        if same:
            log.warning("%s: version(s) %s already hold these exact weights; registering another version anyway",
                        name, ", ".join(map(str, sorted(map(int, same)))))
        version = client.create_model_version(
            name, source=model_info.model_uri, run_id=run.info.run_id, tags=tags, model_id=model_info.model_id,
        )
        card = render_model_card(info, name=name, version=version.version, benchmarks=benchmarks, template=card_template)
        mlflow.log_text(card, "model_card.md")
    client.update_model_version(name, version.version, description=_trim(card))
    if benchmarks:
        attach_benchmark(name, version.version, benchmarks, primary or {}, tracking_uri=uri, run_id=run.info.run_id)
    log.info("registered %s version %s (run %s) in %s", name, version.version, run.info.run_id, uri)
    for alias in aliases:
        promote(name, version.version, alias, tracking_uri=uri)
    return int(version.version)


def _log_pyfunc(mlflow, embedder_cls, package_dir, conf: dict[str, Any], tags: dict[str, str]):
    from clipzoo.core.registry.loading import PACKAGE_ARTIFACT
    from clipzoo.core.registry.pyfunc import signature_for

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=embedder_cls(),
        artifacts={PACKAGE_ARTIFACT: str(Path(package_dir).resolve())},
        signature=signature_for(package_dir),  # input columns and the modality param (served params need it)
        pip_requirements=list(conf.get("pip_requirements") or ["clipzoo-core"]),  # explicit: inference costs ~15 s
        tags=tags,
    )


def _trim(card: str) -> str:
    if len(card) <= MAX_DESCRIPTION:
        return card
    note = "\n\n(card truncated; the full card is the run artifact model_card.md)"
    return card[: MAX_DESCRIPTION - len(note)] + note


# -- inspection ------------------------------------------------------------------------------------------
def _aliases_of(client, name: str) -> dict[str, list[str]]:
    """``{version: [aliases]}`` (search results do not carry aliases; the registered model does)."""
    out: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        out.setdefault(str(version), []).append(alias)
    return out


def _version_dict(v, aliases: dict[str, list[str]]) -> dict[str, Any]:
    tags = dict(v.tags)
    entries = read_bench_tags(tags)
    return {
        "name": v.name,
        "version": int(v.version),
        "aliases": sorted(aliases.get(str(v.version), [])),
        "created": time.strftime("%Y-%m-%d %H:%M", time.gmtime(v.creation_timestamp / 1000)),
        "run_id": v.run_id,
        "tags": {k: val for k, val in tags.items() if not k.startswith((BENCH_TAG, OPTIONS_TAG, STATS_TAG))},
        "benchmarks": {t: e["metrics"] for t, e in entries.items()},
        "bench_details": {t: {k: e[k] for k in ("fingerprint", "options", "n_items", "counts", "interval", "chance",
                                                "bootstrap")}
                          for t, e in entries.items()},
        "headline": {t: {"metric": m, "value": val, "interval": entries[t]["interval"].get(m),
                         "chance": entries[t]["chance"].get(m), "n_items": entries[t]["n_items"]}
                     for t, (m, val) in headline_scores(tags).items()},
    }


def list_models(tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every registered model with its versions (newest first)."""
    from clipzoo.core.registry import store

    client = store.get_client(tracking_uri)
    out = []
    for rm in sorted(client.search_registered_models(max_results=1000), key=lambda m: m.name):
        versions = client.search_model_versions(f"name = '{rm.name}'", max_results=10000)
        aliases = _aliases_of(client, rm.name)
        out.append({
            "name": rm.name,
            "description": rm.description or "",
            "versions": [_version_dict(v, aliases) for v in sorted(versions, key=lambda v: -int(v.version))],
        })
    return out


def show_model(ref: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """One version (``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``NAME`` for the newest) with its card."""
    from clipzoo.core.registry import store
    from clipzoo.core.registry.loading import parse_ref, resolve_version

    uri = store.tracking_uri(tracking_uri)
    client = store.get_client(uri)
    parsed = parse_ref(ref if ref.startswith("models:/") else f"models:/{ref}")
    version = resolve_version(parsed, client, uri)
    out = _version_dict(version, _aliases_of(client, version.name))
    out["card"] = version.description or ""
    return out


# -- aliases and promotion -------------------------------------------------------------------------------
def set_alias(name: str, version: str | int, alias: str, *, tracking_uri: str | None = None) -> None:
    """Move ``alias`` to ``version`` with no check (use :func:`promote` for guarded aliases)."""
    from clipzoo.core.registry import store

    store.get_client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def _options_diff(cand: Any, hold: Any) -> str:
    """The options that differ, ``key cand vs hold`` (nested keys dotted), or "" when none is visible."""
    flat_c, flat_h = _flatten("", cand or {}, {}), _flatten("", hold or {}, {})
    diffs = [f"{k} {flat_c.get(k, '(unset)')} vs {flat_h.get(k, '(unset)')}"
             for k in sorted(set(flat_c) | set(flat_h)) if flat_c.get(k) != flat_h.get(k)]
    return ", ".join(diffs[:4]) + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")


def _comparable(task: str, cand: dict[str, Any], hold: dict[str, Any]) -> str | None:
    """Why the two scores of ``task`` cannot be compared, or ``None`` when they can."""
    missing = [who for who, e in (("candidate", cand), ("current holder", hold)) if not e.get("fingerprint")]
    if missing:
        return (f"{task}: the {' and the '.join(missing)}'s score has no dataset fingerprint (recorded before "
                f"fingerprints were kept, or by hand); re-run clipzoo bench on it")
    if cand["fingerprint"] != hold["fingerprint"]:
        diff = _options_diff(cand.get("options"), hold.get("options"))
        return (f"{task}: scored on different data or options (fingerprint {cand['fingerprint']} vs "
                f"{hold['fingerprint']}{': ' + diff if diff else ''})")
    return None


def _against_interval(value: float, hold: dict[str, Any], metric: str) -> str:
    """Whether ``value`` lies outside the holder's 95% interval of ``metric`` (distinguishable) or inside it."""
    interval = (hold.get("interval") or {}).get(metric)
    if not interval:
        return "the current holder's score has no interval"
    low, high = interval
    where = "outside" if value < low or value > high else "within"
    verdict = "distinguishable" if where == "outside" else "not distinguishable"
    return f"{where} its 95% interval [{low:.4f}, {high:.4f}]: {verdict}"


def compare_for_promotion(candidate_tags: dict[str, str], holder_tags: dict[str, str],
                          task: str | None = None) -> tuple[bool, str]:
    """Whether a candidate matches or beats the holder on the benchmarks both ran (or on ``task``), and why.

    Only scores with equal fingerprints (same test data, same resolved options) are compared; any other
    common task refuses. The reason names, per task, both values and where the candidate's value lies
    relative to the holder's 95% interval.
    """
    cand_e, hold_e = read_bench_tags(candidate_tags), read_bench_tags(holder_tags)
    cand, hold = headline_scores(candidate_tags), headline_scores(holder_tags)
    tasks = [task] if task else sorted(set(cand) & set(hold))
    if task and (task not in cand or task not in hold):
        missing = [who for who, scores in (("candidate", cand), ("current holder", hold)) if task not in scores]
        return False, f"no {task!r} result for the {' and '.join(missing)}"
    if not tasks:
        return False, (f"no benchmark in common (candidate: {', '.join(sorted(cand)) or 'none'}; "
                       f"current holder: {', '.join(sorted(hold)) or 'none'})")
    worse, better = [], []
    for t in tasks:
        metric, value = cand[t]
        hold_metric, hold_value = hold[t]
        if metric != hold_metric:
            return False, f"{t}: headline metrics differ ({metric} vs {hold_metric})"
        why = _comparable(t, cand_e[t], hold_e[t])
        if why:
            return False, why
        note = _against_interval(value, hold_e[t], metric)
        if value < hold_value:
            worse.append(f"{t} {metric} {value:.4f} < {hold_value:.4f} ({note})")
        else:
            better.append(f"{t} {metric} {value:.4f} >= {hold_value:.4f} ({note})")
    if worse:
        return False, "; ".join(worse)
    return True, "; ".join(better)


def promote(
    name: str,
    version: str | int,
    alias: str = "champion",
    *,
    task: str | None = None,
    force: bool = False,
    reason: str = "",
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Point ``alias`` at ``version``; for a guarded alias, only if its scores are at least the holder's.

    Raises :class:`PromotionRefused` (with the scores that decided it) unless ``force``; a forced
    promotion over a refusal is recorded as the tag ``promotion_override/<alias>`` on the version.
    """
    from mlflow.exceptions import MlflowException

    from clipzoo.core.registry import store
    from clipzoo.core.registry.loading import ModelRef, resolve_version

    uri = store.tracking_uri(tracking_uri)
    client = store.get_client(uri)
    candidate = resolve_version(ModelRef(uri=f"models:/{name}/{version}", name=name, version=str(version)), client, uri)
    guarded = alias in (registry_settings.settings().get("guarded_aliases") or [])
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        holder = None
    decision = {"name": name, "version": int(candidate.version), "alias": alias,
                "previous": int(holder.version) if holder else None, "forced": False, "reason": "no check needed"}
    if guarded and holder is not None and str(holder.version) != str(candidate.version):
        ok, why = compare_for_promotion(dict(candidate.tags), dict(holder.tags), task)
        decision["reason"] = why
        if not ok and not force:
            raise PromotionRefused(
                f"refusing to move {alias!r} of {name!r} from version {holder.version} to {candidate.version}: {why}; "
                f"benchmark both on the same task with the same options (clipzoo bench) or pass --force"
            )
        if not ok:
            decision["forced"] = True
            who = _user()
            client.set_model_version_tag(
                name, candidate.version, f"promotion_override/{alias}",
                f"forced over version {holder.version} by {who} at {_now()}: {why}" + (f" ({reason})" if reason else ""),
            )
    client.set_registered_model_alias(name, alias, candidate.version)
    client.set_model_version_tag(name, candidate.version, f"promoted/{alias}", f"{_now()} (was {decision['previous']})")
    log.info("%s: alias %r -> version %s (%s)", name, alias, candidate.version, decision["reason"])
    return decision


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")
