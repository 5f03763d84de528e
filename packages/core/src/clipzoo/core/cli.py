"""``clipzoo``: the command line.

Every subcommand lives in a module exposing ``add_parser(subparsers)``; heavy libraries (torch,
mlflow, webdataset, domain readers) are imported inside the command functions, so ``--help`` is fast.
A command function returns the exit code. Errors a user can fix are printed as one line, exit 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from importlib import import_module
from pathlib import Path

log = logging.getLogger("clipzoo")

# Command modules contributed by other parts of core (each has add_parser(subparsers)).
EXTERNAL_COMMANDS = (
    "clipzoo.core.bench.cli", "clipzoo.core.registry.cli", "clipzoo.core.pipeline", "clipzoo.core.export",
    "clipzoo.core.curate.cli",
)


class UserError(Exception):
    """Something the user can fix; printed as one line without a traceback."""


# -- ingest ---------------------------------------------------------------------------------------
def _add_ingest(sub) -> None:
    from clipzoo.core.plugins import get_registry

    p = sub.add_parser(
        "ingest",
        help="turn a raw archive into webdataset shards + manifest.json",
        description="clipzoo ingest DOMAIN SOURCE INPUT... --out DIR [source options]. Writes tar shards and "
        "DIR/manifest.json (inputs seen, samples written, inputs skipped with path and reason). Exits 0 when it ran "
        "to the end (skips included), non-zero on bad arguments or when nothing could be read.",
    )
    registry = get_registry()
    domains = p.add_subparsers(dest="domain", metavar="DOMAIN", required=True)
    by_domain: dict[str, list[type]] = {}
    for (domain, _), cls in sorted(registry.sources.items()):
        by_domain.setdefault(domain, []).append(cls)
    for domain, classes in by_domain.items():
        dp = domains.add_parser(domain, help=f"{domain} sources: {', '.join(c.name for c in classes)}")
        srcs = dp.add_subparsers(dest="source", metavar="SOURCE", required=True)
        for cls in classes:
            sp = srcs.add_parser(cls.name, help=cls.help, description=inspect.cleandoc(cls.__doc__ or cls.help),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
            configure_ingest_parser(sp, cls)
            sp.set_defaults(func=_cmd_ingest)


class _RaisingParser(argparse.ArgumentParser):
    """A parser whose errors raise IngestError (for callers that are not the command line, e.g. pipelines)."""

    def error(self, message: str):
        from clipzoo.core.ingest import IngestError

        raise IngestError(f"{self.prog}: {message}")


def configure_ingest_parser(sp: argparse.ArgumentParser, cls) -> argparse.ArgumentParser:
    """Give ``sp`` the arguments of ``clipzoo ingest DOMAIN SOURCE``: inputs, the source's own options, then
    the options every source shares. ``source_cls``/``source_options`` defaults say which are the source's."""
    sp.add_argument("inputs", nargs="*", metavar="INPUT", help="files, folders or archives to read")
    cls.add_arguments(sp)
    _add_ingest_common(sp, cls)
    sp.set_defaults(source_cls=cls, source_options=cls.option_names())
    return sp


def ingest_argument_parser(cls) -> argparse.ArgumentParser:
    """A stand-alone parser for one source whose errors raise IngestError instead of exiting."""
    return configure_ingest_parser(_RaisingParser(prog=f"clipzoo ingest {cls.domain} {cls.name}"), cls)


def run_ingest_args(args: argparse.Namespace) -> dict:
    """Run the ingest parsed into ``args`` (by :func:`configure_ingest_parser`); return the ingest summary."""
    from clipzoo.core.ingest import run_ingest

    cls = args.source_cls
    source = cls(argparse.Namespace(**{k: getattr(args, k) for k in args.source_options}))
    return run_ingest(
        source, args.inputs, args.out, max_count=args.shard_size, max_bytes=int(args.shard_bytes * (1 << 30)),
        prefix=args.prefix or cls.name, workers=args.workers, unit_size=args.unit_size, engine=args.engine,
        ray_address=args.ray_address, overwrite=args.overwrite, resume=args.resume,
        image_format=getattr(args, "image_format", None), jpeg_quality=args.jpeg_quality,
    )


def _add_ingest_common(sp: argparse.ArgumentParser, cls) -> None:
    """The options every source shares (output, shards, encoding, engine); a source's own option of the same
    name (e.g. DICOM's --image-format) wins and is passed to both the source and the writer."""
    from clipzoo.core.ingest_engine import default_workers

    g = sp.add_argument_group("output and engine (every source)")

    def add(flag: str, **kwargs) -> None:
        try:
            g.add_argument(flag, **kwargs)
        except argparse.ArgumentError:  # the source declared this flag itself (argparse refuses a second one)
            pass

    add("--out", required=True, help="output folder or fsspec URL (s3://, gs://, memory://) for shards + manifest.json")
    add("--shard-size", type=int, default=10_000, help="max samples per shard (default: %(default)s)")
    add("--shard-bytes", type=float, default=1.0, help="max GiB per shard (default: %(default)s)")
    add("--prefix", default=None, help="shard file prefix (default: the source name)")
    add("--overwrite", action="store_true", help="replace the shard set in a non-empty --out (old shards, manifest "
        "and unit records are removed first)")
    add("--resume", action="store_true", help="finish an interrupted ingest into --out: only units without a done "
        "record are read again (same inputs and options required)")
    add("--workers", type=int, default=default_workers(),
        help="processes (or Ray tasks at a time) reading work units (default: the cores available, %(default)s)")
    add("--unit-size", type=int, default=None, help="inputs per work unit, the grain of parallelism and of --resume "
        "(default: from the number of inputs alone, about 64 units of at most 64 inputs, so every worker gets work)")
    add("--engine", choices=("process", "ray"), default="process",
        help="process: a local process pool; ray: Ray tasks (pip install clipzoo-core[ray]) (default: %(default)s)")
    add("--ray-address", default=None, help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a "
        "local Ray instance")
    add("--image-format", choices=("png", "jpg"), default=None,
        help=f"encoding of image fields (default for this source: {cls.image_format or 'as the source yields it'})")
    add("--jpeg-quality", type=int, default=None, help=f"JPEG quality 1-100 (default: {cls.jpeg_quality})")


def _cmd_ingest(args) -> int:
    summary = run_ingest_args(args)
    skipped = summary["skipped"]
    print(f"{args.out}: {summary['samples_written']} samples from {summary['inputs_seen']} inputs; "
          f"{len(skipped)} skipped")
    for item in skipped[:20]:
        print(f"  skipped {item['path']}: {item['reason']}")
    if len(skipped) > 20:
        print(f"  ... {len(skipped) - 20} more in {args.out.rstrip('/')}/manifest.json")
    if summary["samples_written"] == 0:
        print("error: nothing could be read from the inputs", file=sys.stderr)
        return 1
    return 0


# -- shards ---------------------------------------------------------------------------------------
def _add_shards(sub) -> None:
    p = sub.add_parser("shards", help="inspect and verify shard sets (local folders or s3:// / http(s):// URLs)")
    ss = p.add_subparsers(dest="shards_command", metavar="COMMAND", required=True)
    i = ss.add_parser(
        "inspect", help="a shard set's manifest summary, its health, and a few decoded samples",
        description="Print the manifest summary, check the set's health without hashing (every listed shard present "
        "with its listed size, no unlisted .tar, no leftover .partial) and decode a few samples. Exits 1 when the set "
        "is unhealthy, 2 when it cannot be read at all.")
    i.add_argument("folder", metavar="DIR|URL", help="shard folder, or s3://bucket/set/ or https://host/set/")
    i.add_argument("-n", "--samples", type=int, default=3, help="samples to decode and show (default: %(default)s)")
    _add_storage_arguments(i)
    i.set_defaults(func=_cmd_shards_inspect)
    v = ss.add_parser(
        "verify", help="check every shard's size and sha256 against the manifest",
        description="Stream every listed shard and compare its size and sha256 with the manifest (a progress bar "
        "counts the bytes). Exits 1 naming each shard that is missing or differs, 0 when all match.")
    v.add_argument("folder", metavar="DIR|URL", help="shard folder, or s3://bucket/set/ or https://host/set/")
    _add_storage_arguments(v)
    v.set_defaults(func=_cmd_shards_verify)


def _add_storage_arguments(p) -> None:
    p.add_argument("--endpoint-url", default=None,
                   help="S3-compatible endpoint (MinIO, Ceph, ...); default: AWS_ENDPOINT_URL or AWS itself")
    p.add_argument("--anon", action="store_true", help="anonymous access (a public bucket)")


def _storage(args):
    from clipzoo.core.data.shardset import Storage

    options: dict = {}
    if args.endpoint_url:
        options["endpoint_url"] = args.endpoint_url
    if args.anon:
        options["anon"] = True
    return Storage(options=options)


def _describe_value(value) -> str:
    import numpy as np

    if hasattr(value, "size") and hasattr(value, "mode"):
        return f"image {value.size[0]}x{value.size[1]} {value.mode}"
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {list(value.shape)}"
    if isinstance(value, str):
        return repr(value if len(value) <= 100 else value[:97] + "...")
    text = json.dumps(value, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def _checked_set(args, storage):
    """``check_set`` on the command's folder or URL; a set that cannot be opened at all is one line (exit 2)."""
    from clipzoo.core.data.shardset import ShardSetError, check_set

    try:
        return check_set(str(args.folder), storage)
    except ShardSetError as exc:
        raise UserError(str(exc)) from None


def _cmd_shards_inspect(args) -> int:
    from itertools import islice

    from clipzoo.core.data.loader import _decoder
    from clipzoo.core.data.shardset import BadShardError, iter_samples
    from clipzoo.core.data.writer import Manifest

    folder, storage = str(args.folder), _storage(args)
    health, refs, data = _checked_set(args, storage)
    if data is not None:
        manifest = Manifest.from_dict(data)
        ing = manifest.ingest
        print(f"{folder}: {manifest.num_samples} samples in {len(manifest.shards)} shards "
              f"(created {manifest.created}, layout {data.get('layout', 'clipzoo-v0')})")
        if manifest.source:
            print(f"  source: {manifest.source.get('domain')} {manifest.source.get('name')}")
        if ing:
            print(f"  inputs seen {ing.get('inputs_seen')}, samples written {ing.get('samples_written')}, "
                  f"skipped {len(ing.get('skipped', []))}")
            for name, counts in ing.get("counters", {}).items():
                print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
            for item in ing.get("skipped", [])[:5]:
                print(f"  skipped {item['path']}: {item['reason']}")
        for s in manifest.shards[:10]:
            print(f"  {s.name}  {s.samples} samples  {s.bytes / 1e6:.1f} MB  sha256 {s.sha256[:12]}")
    for note in health.notes:
        print(f"  note: {note}")
    if not health.healthy:
        print(f"{folder}: UNHEALTHY ({len(health.problems)} problem(s); sha256 not checked, see 'clipzoo shards "
              f"verify')", file=sys.stderr)
        for problem in health.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{folder}: healthy (every listed shard present with its size; sha256 not checked, see "
          f"'clipzoo shards verify')")
    decode = _decoder()
    try:
        for sample in islice(iter_samples(refs, storage), args.samples):
            sample = decode(sample)
            print(f"-- {sample['__key__']}")
            for name, value in sorted(sample.items()):
                if not name.startswith("__"):
                    print(f"   {name}: {_describe_value(value)}")
    except BadShardError as exc:
        print(f"{folder}: UNHEALTHY: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_shards_verify(args) -> int:
    from tqdm import tqdm

    from clipzoo.core.data.shardset import BadShardError, sha256_of

    folder, storage = str(args.folder), _storage(args)
    health, refs, data = _checked_set(args, storage)
    if data is None:
        raise UserError(health.problems[0])
    bad: list[str] = []
    with tqdm(total=sum(r.bytes or 0 for r in refs), unit="B", unit_scale=True, desc="sha256",
              disable=not sys.stderr.isatty()) as bar:
        for ref in refs:
            try:
                digest = sha256_of(ref, storage, progress=bar.update)
            except BadShardError as exc:
                bad.append(str(exc))
                continue
            if digest != ref.sha256:
                bad.append(f"{ref.url}: sha256 {digest[:16]}... differs from the manifest's {ref.sha256[:16]}... "
                           f"(corrupt or rewritten); re-run the ingest or restore the shard")
    bad += [p for p in health.problems if " size mismatch" in p or ": missing" in p]
    extra = [p for p in health.problems if p not in bad and " size mismatch" not in p and ": missing" not in p]
    if bad:
        print(f"{folder}: {len(bad)} of {len(refs)} shards FAILED verification", file=sys.stderr)
        for line in sorted(set(bad)):
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{folder}: all {len(refs)} shards match their sha256 ({sum(r.samples or 0 for r in refs)} samples)")
    for line in extra:
        print(f"  warning: {line}")
    return 0


# -- train ----------------------------------------------------------------------------------------
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a contrastive model from a YAML config",
        description="Train (or resume: the latest whole checkpoint under run.output_dir is picked up) a contrastive "
        "model. Override any config value with --section.key=value, e.g. --train.max_steps=200 "
        "--train.backend=deepspeed --train.zero_stage=3. For several processes use "
        "'torchrun --nproc-per-node N -m clipzoo.core.train CONFIG ...' or "
        "'deepspeed --module clipzoo.core.train CONFIG ...'.",
    )
    p.add_argument("config", type=Path, help="trainer YAML (sections run/model/loss/data/optim/train)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from clipzoo.core.train import ConfigError, load_config, train
    from clipzoo.core.train.checkpoint import CheckpointError

    try:
        cfg = load_config(args.config, args.overrides)
        result = train(cfg)
    except (ConfigError, CheckpointError) as exc:  # a bad value or an unusable run folder: one line, exit 2
        raise UserError(str(exc)) from None
    if result.model_dir is not None:
        print(f"trained {result.steps} steps ({result.samples_seen} samples, {result.samples_per_s:.1f} samples/s); "
              f"model package: {result.model_dir}")
    return 0


# -- main -----------------------------------------------------------------------------------------
def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipzoo",
        description="Domain-specialised CLIP models: ingest raw archives into shards, train, benchmark, register.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if argv[:1] == ["ingest"] or not argv or argv[0].startswith("-"):
        _add_ingest(sub)  # loads the plugins: only when ingest is asked for (or for top-level help)
    else:
        sub.add_parser("ingest", help="turn a raw archive into webdataset shards + manifest.json")
    _add_shards(sub)
    _add_train(sub)
    for module in EXTERNAL_COMMANDS:
        import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if a.startswith("--") and "=" in a and "." in a.split("=", 1)[0]]
    unknown = [a for a in extra if a not in overrides]
    if unknown or (overrides and args.command not in ("train", "pipeline")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    args.overrides = overrides
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("urllib3", "PIL", "matplotlib", "alembic", "mlflow", "DeepSpeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from clipzoo.core.data.shardset import BadShardError, ShardSetError
        from clipzoo.core.ingest import IngestError
        from clipzoo.core.plugins import UnknownNameError

        if isinstance(exc, (IngestError, UnknownNameError, ShardSetError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, BadShardError):  # the data broke mid-run: one line naming the shard, not a traceback
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
