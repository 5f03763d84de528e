"""The curation steps. Each decides on signatures only (pass 1's output), deterministically.

A step gets the list of all signatures and the boolean mask of those still kept by the steps before it, and
returns the removals ``{index: reason}`` plus details for the report. Steps are named in a recipe::

    steps:
      - dedup: {by: [pixels, phash, caption], phash_threshold: 8, caption_threshold: 0.8, keep: first}
      - decontaminate: {tasks: [{name: biomed/zeroshot, options: {shards: DIR}}], shards: [DIR], images: [DIR]}
      - balance: {domains: [biomed], entries: [my_entries.txt], t: 20000, seed: 0, unmatched: keep}
      - filter: {min_words: 2, langs: [en], min_side: 64, max_aspect: 3,
                 score_model: "models:/m@champion", min_score: 0.2}
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from clipzoo.core.curate.index import components, hamming_pairs, minhash_pairs
from clipzoo.core.curate.signatures import Signature, SignatureSpec


class CurateError(ValueError):
    """A recipe or option that cannot run; printed as one line, exit 2, nothing written."""


def _check_keys(step: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise CurateError(f"{step}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")


@dataclass
class StepResult:
    removed: dict[int, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Step(ABC):
    """A named curation step; options come from the recipe (unknown ones are refused)."""

    name: ClassVar[str]
    OPTIONS: ClassVar[set[str]] = set()

    def __init__(self, **options: Any):
        _check_keys(self.name, options, self.OPTIONS)
        self.options = options

    def prepare(self, spec: SignatureSpec) -> None:
        """Ask pass 1 for what this step needs."""

    @abstractmethod
    def run(self, sigs: list[Signature], alive: np.ndarray) -> StepResult:
        """Decide over ``sigs[alive]``: the removals ``{index: reason}`` and the details for the report."""

    def describe(self) -> dict[str, Any]:
        return {"step": self.name, "options": self.options}


def _license_rank(licenses: list[str]):
    order = [lic.lower() for lic in licenses]

    def rank(sig: Signature) -> tuple[int, int]:
        lic = sig.license.lower()
        return (order.index(lic) if lic in order else len(order), sig.order)

    return rank


class Dedup(Step):
    """Exact duplicates (decoded pixels/arrays), near-duplicate images (pHash) and captions (MinHash).

    Duplicates form clusters (connected components of the duplicate pairs); each cluster keeps one sample:
    the first in input order (``keep: first``), or the one whose license comes first in ``licenses``
    (``keep: license``), ties by input order.
    """

    name = "dedup"
    OPTIONS = {"by", "phash_threshold", "caption_threshold", "num_perm", "keep", "licenses", "max_clusters_listed"}
    CRITERIA = ("pixels", "phash", "caption")

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.by = list(options.get("by", self.CRITERIA))
        bad = [c for c in self.by if c not in self.CRITERIA]
        if bad or not self.by:
            raise CurateError(f"dedup: 'by' takes some of {', '.join(self.CRITERIA)} (got {self.by})")
        self.phash_threshold = int(options.get("phash_threshold", 8))
        self.caption_threshold = float(options.get("caption_threshold", 0.8))
        self.num_perm = int(options.get("num_perm", 128))
        self.keep = options.get("keep", "first")
        if self.keep not in ("first", "license"):
            raise CurateError(f"dedup: keep must be 'first' or 'license', not {self.keep!r}")
        self.licenses = [str(x) for x in options.get("licenses", [])]
        if self.keep == "license" and not self.licenses:
            raise CurateError("dedup: keep: license needs 'licenses', the ordered list (best first)")
        if not 0 <= self.phash_threshold <= 64 or not 0 < self.caption_threshold <= 1:
            raise CurateError("dedup: phash_threshold is 0..64 bits, caption_threshold a Jaccard in (0, 1]")

    def prepare(self, spec: SignatureSpec) -> None:
        spec.phash = spec.phash or "phash" in self.by
        if "caption" in self.by:
            spec.num_perm = max(spec.num_perm, self.num_perm)

    def run(self, sigs: list[Signature], alive: np.ndarray) -> StepResult:
        idx = np.flatnonzero(alive)
        n = len(idx)
        edges_i, edges_j, why = [], [], []
        found = {c: 0 for c in self.by}
        if "pixels" in self.by:
            groups: dict[str, int] = {}
            for local, g in enumerate(idx):
                digest = sigs[g].pixels
                if digest is None:
                    continue
                if digest in groups:
                    edges_i.append(groups[digest])
                    edges_j.append(local)
                    why.append("exact (decoded pixels)")
                    found["pixels"] += 1
                else:
                    groups[digest] = local
        if "phash" in self.by:
            have = [k for k, g in enumerate(idx) if sigs[g].phash is not None]
            codes = np.array([sigs[idx[k]].phash for k in have], dtype=np.uint64)
            pi, pj, dist = hamming_pairs(codes, self.phash_threshold)
            for a, b, d in zip(pi, pj, dist):
                edges_i.append(have[a])
                edges_j.append(have[b])
                why.append(f"near-duplicate image (pHash distance {d})")
            found["phash"] = int(len(pi))
        if "caption" in self.by:
            mh = [sigs[g].minhash for g in idx]
            for a, b, jac in minhash_pairs(mh, self.caption_threshold, self.num_perm):
                edges_i.append(a)
                edges_j.append(b)
                why.append(f"near-duplicate caption (Jaccard {jac:.2f})")
            found["caption"] = sum(1 for w in why if w.startswith("near-duplicate caption"))
        result = StepResult(details={"pairs": found, "clusters": []})
        if not edges_i:
            return result
        labels = components(n, np.asarray(edges_i), np.asarray(edges_j))
        reason_of: dict[int, str] = {}
        for a, b, w in zip(edges_i, edges_j, why):  # a sample's reason: the first edge that touches it
            reason_of.setdefault(b, w)
            reason_of.setdefault(a, w)
        members: dict[int, list[int]] = {}
        for local in range(n):
            members.setdefault(int(labels[local]), []).append(local)
        rank = _license_rank(self.licenses) if self.keep == "license" else (lambda s: (0, s.order))
        listed = int(self.options.get("max_clusters_listed", 1000))
        clusters = []
        for group in members.values():
            if len(group) < 2:
                continue
            keeper = min(group, key=lambda k: rank(sigs[idx[k]]))
            kept_key = sigs[idx[keeper]].key
            removed = [k for k in group if k != keeper]
            for k in removed:
                result.removed[int(idx[k])] = f"{reason_of.get(k, 'duplicate')} of {kept_key}"
            clusters.append({"kept": kept_key, "removed": [sigs[idx[k]].key for k in sorted(removed)],
                             "size": len(group)})
        clusters.sort(key=lambda c: (-c["size"], c["kept"]))
        result.details["clusters_total"] = len(clusters)
        result.details["clusters"] = clusters[:listed]
        return result


class Decontaminate(Step):
    """Remove training samples that are (near) copies of benchmark samples.

    The benchmark side is named as bench tasks (``{name, options}``: the datasets the task evaluates on),
    shard folders, or image folders. A training sample goes when (``by``, default all three) its decoded pixels
    equal a benchmark sample's (``pixels``), its pHash is within ``phash_threshold`` (``phash``), or its
    normalised caption equals one or has a MinHash Jaccard with one of at least ``caption_threshold`` (``caption``).
    """

    name = "decontaminate"
    OPTIONS = {"tasks", "shards", "images", "by", "phash_threshold", "caption_threshold", "num_perm"}

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.tasks = [t if isinstance(t, dict) else {"name": str(t)} for t in options.get("tasks", [])]
        self.shards = [Path(p) for p in options.get("shards", [])]
        self.images = [Path(p) for p in options.get("images", [])]
        if not (self.tasks or self.shards or self.images):
            raise CurateError("decontaminate: name the benchmark data (tasks, shards or images)")
        for t in self.tasks:
            if "name" not in t:
                raise CurateError(f"decontaminate: a task needs a 'name' (got {t})")
        self.by = list(options.get("by", Dedup.CRITERIA))
        if not self.by or any(c not in Dedup.CRITERIA for c in self.by):
            raise CurateError(f"decontaminate: 'by' takes some of {', '.join(Dedup.CRITERIA)} (got {self.by})")
        self.phash_threshold = int(options.get("phash_threshold", 8))
        self.captions = "caption" in self.by
        self.caption_threshold = float(options.get("caption_threshold", 0.8))
        self.num_perm = int(options.get("num_perm", 128))
        self.reference: list[Signature] = []
        self.against: list[dict[str, Any]] = []

    def prepare(self, spec: SignatureSpec) -> None:
        spec.phash = True
        if self.captions:
            spec.num_perm = max(spec.num_perm, self.num_perm)
        self.spec = spec

    def load_reference(self) -> None:
        """Signatures of the benchmark samples (driver side; benchmark sets are small next to training)."""
        from clipzoo.core.curate.reference import reference_signatures

        self.reference, self.against = reference_signatures(self.tasks, self.shards, self.images, self.spec)

    def run(self, sigs: list[Signature], alive: np.ndarray) -> StepResult:
        if not self.reference and not self.against:
            self.load_reference()
        ref = self.reference
        idx = np.flatnonzero(alive)
        removed: dict[int, str] = {}
        counts = {"pixels": 0, "phash": 0, "caption": 0}
        ref_pixels = {r.pixels: r.key for r in ref if r.pixels}
        for g in idx if "pixels" in self.by else []:
            if sigs[g].pixels and sigs[g].pixels in ref_pixels:
                removed[int(g)] = f"exact copy (decoded pixels) of benchmark sample {ref_pixels[sigs[g].pixels]}"
                counts["pixels"] += 1
        train_ph = [int(g) for g in idx if sigs[g].phash is not None and int(g) not in removed]
        ref_ph = [r for r in ref if r.phash is not None]
        if train_ph and ref_ph and "phash" in self.by:
            codes = np.array([sigs[g].phash for g in train_ph] + [r.phash for r in ref_ph], dtype=np.uint64)
            pi, pj, dist = hamming_pairs(codes, self.phash_threshold)
            nt = len(train_ph)
            best: dict[int, tuple[int, str]] = {}
            for a, b, d in zip(pi, pj, dist):
                if a < nt <= b:  # a training sample next to a benchmark one (i < j, training first)
                    g, r = train_ph[a], ref_ph[b - nt]
                    if g not in best or d < best[g][0]:
                        best[g] = (int(d), r.key)
            for g, (d, rkey) in best.items():
                removed[g] = f"near copy (pHash distance {d}) of benchmark sample {rkey}"
                counts["phash"] += 1
        if self.captions:
            ref_text = {r.text: r.key for r in ref if r.text}
            rest = [int(g) for g in idx if int(g) not in removed and sigs[g].text]
            for g in rest:
                if sigs[g].text in ref_text:
                    removed[g] = f"caption equals benchmark sample {ref_text[sigs[g].text]}'s"
                    counts["caption"] += 1
            rest = [g for g in rest if g not in removed]
            ref_mh = [r.minhash for r in ref]
            if rest and any(m is not None for m in ref_mh):
                for q, i, jac in minhash_pairs(ref_mh, self.caption_threshold, self.num_perm,
                                               query=[sigs[g].minhash for g in rest]):
                    g = rest[q]
                    if g not in removed:
                        removed[g] = f"caption near benchmark sample {ref[i].key}'s (Jaccard {jac:.2f})"
                        counts["caption"] += 1
        return StepResult(removed=removed, details={"found": counts, "against": self.against,
                                                    "reference_samples": len(ref)})


def draw(seed: int, key: str, entry: str) -> float:
    """The balancing draw for one (pair, entry): uniform in [0, 1), a pure function of seed, key and entry.

    Seeded per pair rather than from one stream, so the kept set does not depend on shard order or workers.
    """
    return random.Random(f"{seed}/{key}/{entry}").random()


class Balance(Step):
    """MetaCLIP balancing: cap each metadata entry at about ``t`` pairs.

    An entry matched by ``count`` pairs keeps each with probability ``min(1, t / count)``; a pair is kept
    when any of its matched entries' draws passes. Pairs matching no entry are kept or dropped
    (``unmatched``). Entries: the ``domains``' registered lists plus ``entries`` files.
    """

    name = "balance"
    OPTIONS = {"domains", "entries", "t", "seed", "unmatched"}

    def __init__(self, **options: Any):
        super().__init__(**options)
        from clipzoo.core.curate.metadata import EntryError, load_entries

        domains = options.get("domains", [])
        self.domains = [domains] if isinstance(domains, str) else list(domains)
        files = options.get("entries", [])
        files = [files] if isinstance(files, str) else list(files)
        if not self.domains and not files:
            raise CurateError("balance: name the entry lists (domains and/or entries files)")
        try:
            self.entries, self.sources = load_entries(self.domains, files)
        except EntryError as exc:
            raise CurateError(f"balance: {exc}") from None
        self.t = int(options.get("t", 20_000))
        self.seed = int(options.get("seed", 0))
        self.unmatched = options.get("unmatched", "keep")
        if self.t < 1 or self.unmatched not in ("keep", "drop"):
            raise CurateError("balance: t must be >= 1 and unmatched 'keep' or 'drop'")

    def prepare(self, spec: SignatureSpec) -> None:
        if spec.entries and spec.entries != self.entries:
            raise CurateError("balance: one recipe may balance on one entry list")
        spec.entries = self.entries

    def run(self, sigs: list[Signature], alive: np.ndarray) -> StepResult:
        idx = np.flatnonzero(alive)
        counts = np.zeros(len(self.entries), dtype=np.int64)
        for g in idx:
            for e in sigs[g].entries:
                counts[e] += 1
        removed: dict[int, str] = {}
        after = np.zeros_like(counts)
        unmatched = 0
        for g in idx:
            s = sigs[g]
            if not s.entries:
                unmatched += 1
                if self.unmatched == "drop":
                    removed[int(g)] = "matches no metadata entry"
                continue
            if any(draw(self.seed, s.key, self.entries[e]) < min(1.0, self.t / counts[e]) for e in s.entries):
                for e in s.entries:
                    after[e] += 1
            else:
                top = max(s.entries, key=lambda e: counts[e])
                removed[int(g)] = f"balanced out: entry {self.entries[top]!r} has {counts[top]} pairs (t={self.t})"
        table = {self.entries[e]: [int(counts[e]), int(after[e])] for e in np.flatnonzero(counts)}
        return StepResult(removed=removed, details={
            "t": self.t, "seed": self.seed, "entries_total": len(self.entries), "entries_matched": len(table),
            "head_entries": int((counts > self.t).sum()), "unmatched_pairs": unmatched, "entry_sources": self.sources,
            "entry_counts": table})


class Filter(Step):
    """DataComp-style filters on caption, language, image size and CLIP score.

    A sample fails on the first filter it does not pass (the reason names it). ``score_model`` is any
    registered model (``models:/NAME@ALIAS``, a run or a package folder); keep ``min_score`` and above, or
    the ``top_fraction`` best-scored of the samples reaching this step (ties broken by input order).
    """

    name = "filter"
    OPTIONS = {"min_chars", "max_chars", "min_words", "max_words", "langs", "min_lang_prob", "min_side",
               "max_aspect", "score_model", "min_score", "top_fraction", "score_batch"}

    def __init__(self, **options: Any):
        super().__init__(**options)
        o = options
        self.langs = [o["langs"]] if isinstance(o.get("langs"), str) else list(o.get("langs") or [])
        self.score_model = o.get("score_model")
        if (o.get("min_score") is not None or o.get("top_fraction") is not None) and not self.score_model:
            raise CurateError("filter: min_score / top_fraction need a score_model")
        if self.score_model and (o.get("min_score") is None) == (o.get("top_fraction") is None):
            raise CurateError("filter: with score_model give exactly one of min_score or top_fraction")
        tf = o.get("top_fraction")
        if tf is not None and not 0 < float(tf) <= 1:
            raise CurateError(f"filter: top_fraction must be in (0, 1], not {tf}")

    def prepare(self, spec: SignatureSpec) -> None:
        if self.langs:
            spec.langid = True
        if self.score_model:
            spec.score_model = str(self.score_model)
            spec.score_batch = int(self.options.get("score_batch", 64))

    def _fails(self, s: Signature) -> tuple[str, str] | None:
        o = self.options
        if o.get("min_chars") is not None and s.n_chars < int(o["min_chars"]):
            return "chars", f"caption has {s.n_chars} characters (< {o['min_chars']})"
        if o.get("max_chars") is not None and s.n_chars > int(o["max_chars"]):
            return "chars", f"caption has {s.n_chars} characters (> {o['max_chars']})"
        if o.get("min_words") is not None and s.n_words < int(o["min_words"]):
            return "words", f"caption has {s.n_words} words (< {o['min_words']})"
        if o.get("max_words") is not None and s.n_words > int(o["max_words"]):
            return "words", f"caption has {s.n_words} words (> {o['max_words']})"
        if self.langs:
            if s.lang not in self.langs:
                return "language", f"caption language {s.lang or 'none'} not in {','.join(self.langs)}"
            if o.get("min_lang_prob") is not None and (s.lang_prob or 0.0) < float(o["min_lang_prob"]):
                return "language", (f"caption language {s.lang} with probability {s.lang_prob:.2f} "
                                    f"(< {o['min_lang_prob']})")
        if (o.get("min_side") is not None or o.get("max_aspect") is not None) and s.has_image:
            side = min(s.width, s.height)
            if o.get("min_side") is not None and side < int(o["min_side"]):
                return "min_side", f"image {s.width}x{s.height}: shorter side < {o['min_side']}"
            aspect = max(s.width, s.height) / max(side, 1)
            if o.get("max_aspect") is not None and aspect > float(o["max_aspect"]):
                return "aspect", f"image {s.width}x{s.height}: aspect ratio {aspect:.2f} > {o['max_aspect']}"
        return None

    def run(self, sigs: list[Signature], alive: np.ndarray) -> StepResult:
        removed: dict[int, str] = {}
        reasons: dict[str, int] = {}
        idx = [int(g) for g in np.flatnonzero(alive)]
        for g in idx:
            failed = self._fails(sigs[g])
            if failed is not None:
                kind, removed[g] = failed
                reasons[kind] = reasons.get(kind, 0) + 1
        details: dict[str, Any] = {}
        if self.score_model:
            rest = [g for g in idx if g not in removed]
            for g in rest:
                if sigs[g].score is None:
                    removed[g] = "no image and caption to score"
                    reasons["score"] = reasons.get("score", 0) + 1
            rest = [g for g in rest if g not in removed]
            scores = np.array([sigs[g].score for g in rest], dtype=np.float64)
            if self.options.get("min_score") is not None:
                cut = float(self.options["min_score"])
                for g, score in zip(rest, scores):
                    if score < cut:
                        removed[g] = f"CLIP score {score:.3f} below {cut:.3f}"
                        reasons["score"] = reasons.get("score", 0) + 1
            else:
                fraction = float(self.options["top_fraction"])
                n_keep = int(np.ceil(fraction * len(rest)))
                ranked = sorted(range(len(rest)), key=lambda k: (-scores[k], sigs[rest[k]].order))
                cut = float(scores[ranked[n_keep - 1]]) if n_keep else float("inf")
                for k in ranked[n_keep:]:
                    removed[rest[k]] = f"CLIP score {scores[k]:.3f} not in the top {fraction:g} (cut {cut:.3f})"
                    reasons["score"] = reasons.get("score", 0) + 1
            details["score_cut"] = cut
            if len(scores):
                details["score_quantiles"] = {q: float(np.quantile(scores, q)) for q in (0.1, 0.5, 0.9)}
        details["removed_by_kind"] = dict(sorted(reasons.items()))
        return StepResult(removed=removed, details=details)


STEPS: dict[str, type[Step]] = {cls.name: cls for cls in (Dedup, Decontaminate, Balance, Filter)}


def build_steps(items: list[Any]) -> list[Step]:
    """Steps from a recipe's ``steps`` list: each item ``{name: {options}}`` (or just ``name``)."""
    if not isinstance(items, list) or not items:
        raise CurateError("a curate recipe needs 'steps': a list like [{dedup: {...}}, {filter: {...}}]")
    out = []
    for item in items:
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise CurateError(f"each step is one 'name: {{options}}' mapping, not {item!r}")
        (name, options), = item.items()
        if name not in STEPS:
            raise CurateError(f"unknown curate step {name!r}; steps: {', '.join(STEPS)}")
        if options is not None and not isinstance(options, dict):
            raise CurateError(f"{name}: options must be a mapping, not {options!r}")
        out.append(STEPS[name](**(options or {})))
    return out
