"""The model card and the registry tags say whether, and against what, the training data was decontaminated."""

from __future__ import annotations

from pathlib import Path

from clipzoo.core.registry.card import PackageInfo, _data_entries, render_model_card
from clipzoo.core.registry.client import _version_tags


def _info(data) -> PackageInfo:
    return PackageInfo(path=Path("."), config={"embed_dim": 8}, summary={"data": data}, weights_sha256="0" * 64,
                       datasets=_data_entries(data))


def test_card_and_tags_name_what_the_training_data_was_decontaminated_against():
    # as train_summary.json records them: a curated set (its manifest's ingest notes), one curated without a
    # decontaminate step, and a set that never went through curate
    data = [
        {"name": "pmc", "ingest": {"samples_written": 10, "notes": {
            "curated": True, "decontaminated_against": ["bench:biomed/ct-zeroshot", "folder:/data/test"]}}},
        {"name": "ct", "ingest": {"samples_written": 5, "notes": {"curated": True, "decontaminated_against": []}}},
        {"name": "raw", "ingest": {"samples_written": 3}},
    ]
    info = _info(data)
    assert [d.decontaminated_against for d in info.datasets] == [
        ["bench:biomed/ct-zeroshot", "folder:/data/test"], [], None]
    tag = _version_tags(info)["decontaminated_against"]
    assert tag == "pmc: bench:biomed/ct-zeroshot, folder:/data/test; ct: none; raw: not checked"
    card = render_model_card(info, name="m", version=1)
    assert "| pmc | 10 |" in card and "bench:biomed/ct-zeroshot, folder:/data/test |" in card
    assert "curated, not decontaminated |" in card and "not checked (not curated) |" in card
