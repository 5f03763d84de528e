"""``clipzoo registry {register,list,show,promote,leaderboard}``, ``clipzoo ui`` and ``clipzoo serve``.

Import-light: mlflow is imported when a command runs. ``add_parser(subparsers)`` adds both commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow store (default MLFLOW_TRACKING_URI or sqlite under CLIPZOO_HOME)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    reg = subparsers.add_parser("registry", help="register, list, show and promote models; leaderboard",
                                description="The clipzoo model registry (MLflow).")
    sub = reg.add_subparsers(dest="registry_command", metavar="COMMAND", required=True)

    p = sub.add_parser("register", help="register a model package folder (save_pretrained + train_summary.json)")
    p.add_argument("package", help="model package folder (config.json, model.safetensors, train_summary.json)")
    p.add_argument("--name", required=True, help="registered model name, e.g. biomed-clip")
    p.add_argument("--alias", action="append", default=[], help="alias to set (candidate, champion...); repeatable")
    p.add_argument("--domain", help="domain tag (default: train_summary.json's, else its data sources')")
    _store_arg(p)
    p.set_defaults(func=_register)

    p = sub.add_parser("list", help="registered models and their versions")
    p.add_argument("--json", action="store_true", help="print JSON")
    _store_arg(p)
    p.set_defaults(func=_list)

    p = sub.add_parser("show", help="one version: tags, scores and model card")
    p.add_argument("ref", help="NAME (newest), NAME/VERSION, models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--json", action="store_true", help="print JSON")
    _store_arg(p)
    p.set_defaults(func=_show)

    p = sub.add_parser("promote", help="move an alias to a version (champion needs a score >= the holder's)",
                       description="Move an alias to a version. A guarded alias (champion) moves only if the version "
                       "scores at least the holder's headline value on every common task, with the same dataset "
                       "fingerprint and options; the decision says whether the difference lies outside the holder's "
                       "95%% interval (distinguishable). An indistinguishable gain or a tie promotes.")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--alias", default="champion")
    p.add_argument("--task", help="compare on this benchmark task only (default: every task both ran)")
    p.add_argument("--force", action="store_true", help="promote even if refused; recorded as a tag on the version")
    p.add_argument("--reason", default="", help="why (recorded with --force)")
    _store_arg(p)
    p.set_defaults(func=_promote)

    p = sub.add_parser("leaderboard", help="versions x metrics with 95%% intervals and chance, one block per task: "
                       "terminal table, Markdown, PNG (one panel per task)")
    p.add_argument("--name", help="only this registered model")
    p.add_argument("--task", nargs="+", help="only these tasks")
    p.add_argument("--markdown", metavar="FILE", help="also write the Markdown table here")
    p.add_argument("--png", metavar="FILE", help="also write a bar chart here")
    _store_arg(p)
    p.set_defaults(func=_leaderboard)

    ui = subparsers.add_parser("ui", help="open the MLflow UI on the clipzoo store (runs, curves, versions)",
                               description="Runs 'mlflow ui' on the clipzoo store until Ctrl-C or SIGTERM, which stop "
                               "it and its workers.")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    _store_arg(ui)
    ui.set_defaults(func=_ui)

    serve = subparsers.add_parser(
        "serve", help="serve a registered version over REST (mlflow models serve, POST /invocations)",
        description="Runs 'mlflow models serve --env-manager local' on a registered version of the clipzoo store, "
        "with this environment's bin folder on PATH (the server needs its uvicorn). POST /invocations a "
        "dataframe_split with columns named after the model's modalities (text; image as base64), and optionally "
        "params {\"modality\": ...}; see clipzoo.core.registry.pyfunc for the output. Ctrl-C or SIGTERM stop it.")
    serve.add_argument("model", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5001)
    _store_arg(serve)
    serve.set_defaults(func=_serve)
    return reg


def _fail(exc: Exception) -> int:
    print(f"clipzoo registry: error: {exc}", file=sys.stderr)
    return 2


def _guard(fn):
    def wrapped(args: argparse.Namespace) -> int:
        from clipzoo.core.registry.errors import RegistryError

        try:
            return fn(args)
        except (RegistryError, FileNotFoundError, ValueError) as exc:
            return _fail(exc)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


@_guard
def _register(args: argparse.Namespace) -> int:
    from clipzoo.core.registry.client import promote, register_model
    from clipzoo.core.registry.errors import PromotionRefused

    version = register_model(args.package, args.name, tracking_uri=args.tracking_uri, domain=args.domain)
    print(f"registered {args.name} version {version}")
    status = 0
    for alias in args.alias:  # one by one: a refused champion still leaves the version registered
        try:
            promote(args.name, version, alias, tracking_uri=args.tracking_uri)
            print(f"  @{alias} -> version {version}")
        except PromotionRefused as exc:
            print(f"clipzoo registry: refused: {exc}", file=sys.stderr)
            status = 1
    return status


@_guard
def _list(args: argparse.Namespace) -> int:
    from clipzoo.core.registry.client import list_models

    models = list_models(args.tracking_uri)
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("no registered models (clipzoo registry register PACKAGE --name NAME)")
    for m in models:
        print(m["name"])
        for v in m["versions"]:
            tags = v["tags"]
            aliases = f" @{',@'.join(v['aliases'])}" if v["aliases"] else ""
            scores = ", ".join(f"{t} {h['metric']}={h['value']:.4f}"
                               + (f" [{h['interval'][0]:.4f}, {h['interval'][1]:.4f}]" if h.get("interval") else "")
                               for t, h in sorted(v["headline"].items()))
            print(f"  v{v['version']}{aliases}  {v['created']}  {tags.get('domain', '?')}/{tags.get('architecture', '?')}"
                  f"  data {tags.get('data_fingerprint', '?')}" + (f"  [{scores}]" if scores else ""))
    return 0


@_guard
def _show(args: argparse.Namespace) -> int:
    from clipzoo.core.registry.client import show_model

    ref = args.ref if args.ref.startswith("models:/") or "/" not in args.ref else f"models:/{args.ref}"
    info = show_model(ref, args.tracking_uri)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']} version {info['version']}  aliases: {', '.join(info['aliases']) or '-'}  created {info['created']}")
    for key, value in sorted(info["tags"].items()):
        print(f"  {key}: {value}")
    print()
    print(info["card"])
    return 0


@_guard
def _promote(args: argparse.Namespace) -> int:
    from clipzoo.core.registry.client import promote
    from clipzoo.core.registry.errors import PromotionRefused

    try:
        d = promote(args.name, args.version, args.alias, task=args.task, force=args.force, reason=args.reason,
                    tracking_uri=args.tracking_uri)
    except PromotionRefused as exc:
        print(f"clipzoo registry: refused: {exc}", file=sys.stderr)
        return 1
    was = f" (was version {d['previous']})" if d["previous"] else ""
    print(f"{d['name']}@{d['alias']} -> version {d['version']}{was}{' FORCED' if d['forced'] else ''}: {d['reason']}")
    return 0


@_guard
def _leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clipzoo.core.registry.leaderboard import collect
    from clipzoo.core.data.writer import atomic_write_text

    board = collect(args.tracking_uri, name=args.name, tasks=args.task)
    print(board.to_terminal())
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.markdown), board.to_markdown())
        print(f"wrote {args.markdown}")
    if args.png:
        print(f"wrote {board.to_png(args.png)}")
    return 0


def _ui(args: argparse.Namespace) -> int:
    from clipzoo.core.registry import store

    uri = store.tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        print(f"the store is a tracking server: open {uri} in a browser")
        return 0
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    if uri.startswith("sqlite:///"):
        store.get_client(uri)  # creates the folder of a fresh store
        cmd += ["--default-artifact-root", store.local_artifact_root(uri).as_uri()]
    print(f"MLflow UI on http://{args.host}:{args.port} for {uri} (Ctrl-C stops it)")
    return _run_group(cmd)


def _serve(args: argparse.Namespace) -> int:
    import os

    from clipzoo.core.registry import store

    if not args.model.startswith("models:/"):
        print(f"clipzoo serve: error: {args.model!r} is not models:/NAME/VERSION or models:/NAME@ALIAS",
              file=sys.stderr)
        return 2
    uri = store.tracking_uri(args.tracking_uri)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # uvicorn lives beside this python
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "--env-manager", "local", "-m", args.model,
           "-h", args.host, "-p", str(args.port)]
    print(f"serving {args.model} from {uri} on http://{args.host}:{args.port}/invocations (Ctrl-C stops it)")
    return _run_group(cmd, env)


def _run_group(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run a server in its own process group and stop the whole group (its workers too) when this process
    gets SIGTERM or SIGINT: by default SIGTERM would end only this process and leave the server running."""
    import os
    import signal
    import subprocess

    class _Stop(Exception):
        pass

    def stop(signum, frame):
        raise _Stop()

    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    except (_Stop, KeyboardInterrupt):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
