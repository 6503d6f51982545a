"""recforge: recommendation embedding models (iALS, BPR, sampled softmax) on CPU and CUDA.

- ``recforge.AlternatingLeastSquares``, ``recforge.BayesianPersonalizedRanking``,
  ``recforge.SampledSoftmax`` and ``recforge.CosineContrastive``: implicit 0.7's classes and
  methods over recforge's engine.
- ``recforge.train(config)``: a run from a YAML config (a path or a dict), as ``recforge train``.
- ``recforge.Export(path)``: answers queries from an export or a run directory (no SciPy needed).
- ``recforge.evaluation``: implicit 0.7's ``implicit.evaluation`` (splits and ranking metrics).
- ``recforge.nearest_neighbours``: implicit's ``bm25_weight``, ``tfidf_weight`` and ``normalize``.
- ``recforge.als`` and ``recforge.bpr``: implicit's module paths of the two classes, so that
  ``import recforge as implicit`` runs code written as ``implicit.als.AlternatingLeastSquares``;
  ``recforge.utils.ParameterWarning`` (also ``recforge.ParameterWarning``) is
  ``implicit.utils.ParameterWarning``'s place.

See docs/python.md.
"""

import os as _os


def _choose_blas_kernels():
    """OPENBLAS_CORETYPE for the engine's OpenBLAS, before the extension module loads it.

    Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to its slowest
    kernels (Prescott). The CLI restarts itself with better ones (src/core/blas.cpp); a Python
    process cannot, so the kernels are chosen here by the same rule: SkylakeX with AVX-512
    (F, BW, DQ, VL), else Haswell with AVX2 and FMA. Nothing is set when the user set
    OPENBLAS_CORETYPE or RECFORGE_KEEP_BLAS, or when /proc/cpuinfo cannot be read.
    """
    if "OPENBLAS_CORETYPE" in _os.environ or "RECFORGE_KEEP_BLAS" in _os.environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return
    flags = set(flags)
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        _os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    elif {"avx2", "fma"} <= flags:
        _os.environ["OPENBLAS_CORETYPE"] = "Haswell"


_choose_blas_kernels()

from ._recforge import __version__, cuda_compiled, cuda_device_count  # noqa: E402
from .models import (  # noqa: E402
    AlternatingLeastSquares, BayesianPersonalizedRanking, CosineContrastive, ParameterWarning,
    SampledSoftmax)
from .runs import Export, RecommendationList, Run, compare_paired, train  # noqa: E402
from . import als, bpr, evaluation, nearest_neighbours, utils  # noqa: E402

__all__ = ["__version__", "cuda_compiled", "cuda_device_count"]
__all__ += ["AlternatingLeastSquares", "BayesianPersonalizedRanking", "SampledSoftmax",
            "CosineContrastive", "ParameterWarning"]
__all__ += ["train", "Run", "compare_paired", "Export", "RecommendationList", "evaluation", "nearest_neighbours",
            "als", "bpr", "utils"]
