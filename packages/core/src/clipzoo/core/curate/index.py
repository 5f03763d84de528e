"""Near-duplicate candidate search whose cost stays near-linear in the number of samples.

Images: 64-bit perceptual hashes, Hamming distance. Hand-written bit-sampling LSH in numpy (not a faiss
binary index: faiss's exact indexes are quadratic, and its hash indexes would still need a Python loop per
query here): ``tables`` hash tables, each keyed by ``bits`` hash bits drawn with a fixed seed; two codes
become a candidate pair when they agree on all sampled bits of some table, and a candidate is kept when its
true Hamming distance is at most the threshold. A pair at distance ``d`` collides in one table with
probability ``C(64-d, bits) / C(64, bits)``; with the defaults (48 tables of 16 bits) a pair at distance 6 is
found with probability 0.9998, at distance 8 with 0.986, at 10 with 0.88, and identical codes always, while
two unrelated codes (distance ~32) become a candidate with probability 6e-5 (verified away). Everything is seeded,
so a run's result is a pure function of its input.

Captions: MinHash LSH (datasketch) over character shingles, verified by the MinHash Jaccard estimate.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

LSH_TABLES = 48
LSH_BITS = 16
LSH_SEED = 20_240_613


def popcount64(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x.astype(np.uint64))


def hamming_pairs(codes: np.ndarray, threshold: int, *, tables: int = LSH_TABLES, bits: int = LSH_BITS,
                  seed: int = LSH_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j, distance)`` with ``i < j`` and ``hamming(codes[i], codes[j]) <= threshold``.

    ``codes`` are uint64 hashes. Identical codes are grouped first (always pairs), so a set with many copies
    of one picture costs no more than one with none.
    """
    codes = np.asarray(codes, dtype=np.uint64)
    n = len(codes)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if n < 2:
        return empty
    uniq, inverse = np.unique(codes, return_inverse=True)
    pairs_i: list[np.ndarray] = []
    pairs_j: list[np.ndarray] = []
    # 1. identical codes: chain each member of a group to the group's first member
    order = np.argsort(inverse, kind="stable")
    grouped = inverse[order]
    same = grouped[1:] == grouped[:-1]
    if same.any():
        starts = np.r_[0, np.flatnonzero(~same) + 1]
        first_of = np.repeat(order[starts], np.diff(np.r_[starts, n]))
        dup = order[1:][same]
        pairs_i.append(np.minimum(first_of[1:][same], dup))
        pairs_j.append(np.maximum(first_of[1:][same], dup))
    # 2. distinct codes: bit-sampling LSH, candidate pairs of unique codes, verified
    m = len(uniq)
    cand: list[np.ndarray] = []
    if m > 1 and threshold > 0:
        rng = np.random.default_rng(seed)
        one = np.uint64(1)
        for _ in range(tables):
            pos = rng.choice(64, size=bits, replace=False)
            keys = np.zeros(m, dtype=np.uint64)
            for k, p in enumerate(pos):  # gather the sampled bits into a key, on whole columns (cache-friendly)
                keys |= ((uniq >> np.uint64(p)) & one) << np.uint64(k)
            srt = np.argsort(keys, kind="stable")
            ks = keys[srt]
            offset = 1
            while True:  # all pairs inside runs of equal keys, one offset at a time (vectorised)
                eq = ks[offset:] == ks[:-offset]
                if not eq.any():
                    break
                a, b = srt[:-offset][eq], srt[offset:][eq]
                cand.append(np.minimum(a, b).astype(np.int64) * m + np.maximum(a, b))
                offset += 1
    if cand:
        flat = np.sort(np.concatenate(cand))  # sort + run ends: numpy's hash-based unique is far slower here
        flat = flat[np.r_[True, flat[1:] != flat[:-1]]]
        ui, uj = flat // m, flat % m
        dist = popcount64(uniq[ui] ^ uniq[uj])
        ok = dist <= threshold
        ui, uj = ui[ok], uj[ok]
        # map unique-code pairs back to samples: the first sample carrying each code represents it
        first = np.full(m, n, dtype=np.int64)
        np.minimum.at(first, inverse, np.arange(n))
        a, b = first[ui], first[uj]
        pairs_i.append(np.minimum(a, b))
        pairs_j.append(np.maximum(a, b))
    if not pairs_i:
        return empty
    i = np.concatenate(pairs_i).astype(np.int64)
    j = np.concatenate(pairs_j).astype(np.int64)
    return i, j, popcount64(codes[i] ^ codes[j]).astype(np.int64)


def minhash_pairs(minhashes: Sequence, threshold: float, num_perm: int,
                  query: Sequence | None = None) -> list[tuple[int, int, float]]:
    """Caption pairs whose MinHash Jaccard estimate is at least ``threshold``.

    Without ``query``: pairs ``(i, j, jaccard)``, ``i < j``, within ``minhashes``. With ``query``: pairs
    ``(q, i, jaccard)`` of a query caption and an indexed one. ``None`` entries (no caption) never pair.
    """
    import gc

    from datasketch import MinHashLSH

    # The LSH tables are millions of small objects without cycles (refcounting frees them): with the collector on,
    # each full collection rescans all of them and the search grows faster than the corpus.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _minhash_pairs(MinHashLSH(threshold=threshold, num_perm=num_perm), minhashes, threshold, query)
    finally:
        if was_enabled:
            gc.enable()


def _minhash_pairs(lsh, minhashes: Sequence, threshold: float, query: Sequence | None) -> list[tuple[int, int, float]]:
    with lsh.insertion_session() as session:
        for i, m in enumerate(minhashes):
            if m is not None:
                session.insert(i, m, check_duplication=False)
    out = []
    probes = query if query is not None else minhashes
    for q, m in enumerate(probes):
        if m is None:
            continue
        for i in lsh.query(m):
            if query is None and i <= q:
                continue
            jac = float(m.jaccard(minhashes[i]))
            if jac >= threshold:
                out.append((q, int(i), jac))
    out.sort()
    return out


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes given edges ``(i, j)`` (scipy's csgraph)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]
