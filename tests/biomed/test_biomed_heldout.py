"""The biomed demo scores test items it never trained on (issue 15.5): CT slices, labelled by plane, held out.

The recipe's CT step is ingested from the real file as the recipe says, and its benchmark task is built from
the recipe's options: every slice is labelled by its plane, and the CT shards are in no training input.
"""

from __future__ import annotations


import pytest
import yaml

from clipzoo.core.pipeline import find_recipe



@pytest.mark.slow
def test_ct_slices_are_held_out_and_labelled_by_plane(shared_data, tmp_path):
    from clipzoo.core.cli import main
    from clipzoo.core.plugins import get_registry

    recipe = yaml.safe_load(find_recipe("biomed").read_text(encoding="utf-8"))
    trained_on = recipe["train"]["data"]["train"] + [i for c in recipe.get("curate", []) for i in c["inputs"]]
    assert "${ingest.ct}" not in trained_on and "${ingest.modalities}" not in trained_on
    step = next(s for s in recipe["ingest"] if s["name"] == "ct")
    inputs = [i.replace("${shared}", str(shared_data)) for i in step["inputs"]]
    assert main(["ingest", *step["source"].split(), *inputs, "--out", str(tmp_path / "ct"), *map(str, step["args"])]) == 0

    options = dict(recipe["bench"]["options"]["biomed/ct-zeroshot"])
    options.pop("bootstrap")  # a harness option, not the task's
    options["shards"] = str(tmp_path / "ct")
    task = get_registry().task("biomed/ct-zeroshot")(**options)
    labels = task.dataset.labels()
    assert len(labels) == 35 and sorted(set(labels)) == [0, 1, 2]  # axial, coronal, sagittal all present
    planes = [s["json"]["plane"] for s in task.dataset.samples()]
    assert [["axial", "coronal", "sagittal"].index(p) for p in planes] == labels
