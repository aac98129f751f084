"""Triton Python-backend model written by `fakedet export --format triton --image-endpoint`.

Clients send encoded images (IMAGE: BYTES, one JPEG/PNG/WebP file per row); the server
decodes them and applies the package's own preprocessing, so no client can get the
contract wrong. Outputs per row: SCORE (P(fake), NaN if the image failed), IS_FAKE and
ERROR (empty, or what was wrong with that image: one bad image never fails a batch).

The package lies beside this file (detector.fdet). Model parameters: fakedet_backend
(auto, ort-cpu, ort-cuda, ort-trt, tensorrt) and fakedet_precision (auto, fp32, fp16, int8).
The stub's embedded Python ignores PYTHONPATH; where fakedet is not installed for the
stub's Python, point FAKEDET_PYTHONPATH (or PYTHONPATH) at a site-packages that has it.
This file is copied into the repository as model.py; fakedet itself never imports it.
"""

import os
import site
import sys

for _p in reversed((os.environ.get("FAKEDET_PYTHONPATH") or os.environ.get("PYTHONPATH") or "").split(os.pathsep)):
    if _p and _p not in sys.path:
        sys.path.insert(0, _p)
    if _p:
        site.addsitedir(_p)  # runs its .pth files too (editable installs, namespace packages)

import json  # noqa: E402

import triton_python_backend_utils as pb_utils  # noqa: E402

from fakedet.runtime.detector import Detector  # noqa: E402
from fakedet.runtime.serving import score_blobs  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        package = os.path.join(args["model_repository"], str(args["model_version"]), "detector.fdet")
        self.detector = Detector.open(package, backend=params.get("fakedet_backend") or "auto",
                                      precision=params.get("fakedet_precision") or "auto")

    def execute(self, requests):
        blobs, counts = [], []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            blobs.extend(bytes(b) for b in rows)
            counts.append(len(rows))
        scores, fake, errors = score_blobs(self.detector, blobs)  # the whole server batch in one call
        responses, start = [], 0
        for n in counts:
            rows = slice(start, start + n)
            start += n
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("SCORE", scores[rows]),
                pb_utils.Tensor("IS_FAKE", fake[rows]),
                pb_utils.Tensor("ERROR", errors[rows]),
            ]))
        return responses

    def finalize(self):
        self.detector.close()
