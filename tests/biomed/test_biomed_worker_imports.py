"""``worker_imports`` of the biomed sources: a worker forked with them loaded imports no third-party reader later.

The process pool's forkserver imports a source's ``worker_imports`` once (``Source.worker_imports``); a module
missing from the list is paid again by every worker inside its first unit, and a misspelt one is silently
skipped by the forkserver. Each case reads one real input in a fresh interpreter exactly as a worker does
(the source pickled by the parent, unpickled, ``samples`` + ``encode_sample``) after importing only what the
forkserver would, and lists the third-party packages the first input still imported.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

from clipzoo.biomed.sources import DicomSource, ImagesSource, JatsSource, NiftiSource

# Every third-party package a biomed source's first input touches (readers, decoders, PIL, numpy, progress bar)
THIRD_PARTY = {"numpy", "PIL", "pydicom", "pylibjpeg", "openjpeg", "libjpeg", "jpeg_ls", "rle", "monai", "torch",
               "nibabel", "lxml", "imagehash", "scipy", "tqdm"}

WORKER = r"""
import importlib, json, pickle, sys
from pathlib import Path
import clipzoo.core.ingest_engine  # the forkserver preloads the engine ...
blob = sys.stdin.buffer.read()
cls_module = sys.argv[1]
importlib.import_module(cls_module)  # ... the source's module ...
source_cls = pickle.loads(blob).__class__
for name in source_cls.worker_imports:  # ... and its worker_imports (import errors must fail the test here)
    importlib.import_module(name)
before = set(sys.modules)
from clipzoo.core.data.writer import encode_sample
from clipzoo.core.ingest import IngestReport
source = pickle.loads(blob)
report = IngestReport()
count = 0
for sample in source.samples([Path(sys.argv[2])], report):
    encode_sample(sample, image_format=source.options.image_format)
    count += 1
print(json.dumps({"samples": count, "skipped": report.skipped, "new": sorted(set(sys.modules) - before)}))
"""


@pytest.mark.parametrize("source_cls, relpath", [
    (DicomSource, "medical_images/dicom/RG1_J2KI.dcm"),  # JPEG 2000: a decoder plugin on top of pydicom
    (JatsSource, "jats_packages/elife-19405/elife-19405.xml"),  # TIFF figures, pHash near-duplicate check
    (ImagesSource, "medical_images/fundus/retina.jpg"),
    pytest.param(NiftiSource, "medical_images/nifti/anatomical.nii", marks=pytest.mark.slow),  # imports torch
])
def test_first_input_imports_no_third_party_module_beyond_worker_imports(source_cls, relpath, shared_data):
    path = shared_data / "biomed" / relpath
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", WORKER, source_cls.__module__, str(path)],
                          input=pickle.dumps(source_cls()), capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result["samples"] >= 1 and not result["skipped"], result
    late = sorted(m for m in result["new"] if m.split(".")[0] in THIRD_PARTY)
    assert late == [], f"{source_cls.__name__}: first input imported {late}; add them to worker_imports"
