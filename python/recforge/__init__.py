"""recforge: recommendation embedding models (iALS, BPR, sampled softmax) on CPU and CUDA.

- ``recforge.AlternatingLeastSquares``, ``recforge.BayesianPersonalizedRanking`` and
  ``recforge.SampledSoftmax``: implicit 0.7's classes and methods over recforge's engine.
- ``recforge.train(config)``: a run from a YAML config (a path or a dict), as ``recforge train``.
- ``recforge.Export(path)``: answers queries from an export or a run directory (no SciPy needed).

See docs/python.md.
"""

from ._recforge import __version__, cuda_compiled, cuda_device_count
from .models import AlternatingLeastSquares, BayesianPersonalizedRanking, SampledSoftmax

__all__ = ["__version__", "cuda_compiled", "cuda_device_count"]
__all__ += ["AlternatingLeastSquares", "BayesianPersonalizedRanking", "SampledSoftmax"]
