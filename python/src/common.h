#pragma once
/// @file common.h
/// What every part of the extension module recforge._recforge shares: the parts' entry points,
/// zero-copy NumPy views of the engine's matrices, and running engine code without the GIL.
///
/// Errors: the module's translator (module.cpp) turns recforge::Error (the user's mistake, one
/// sentence naming the input) into ValueError and recforge::InternalError into RuntimeError,
/// both with the engine's message unchanged; std::bad_alloc becomes MemoryError (pybind11's
/// own translation), any other std::exception RuntimeError.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "core/npy.h"

namespace recforge::python {

namespace py = pybind11;

/// The in-memory models (recforge.AlternatingLeastSquares, ...): python/src/models.cpp.
void bind_models(py::module_& m);
/// Configs, runs and exports (recforge.train, recforge.Export): python/src/runs.cpp.
void bind_runs(py::module_& m);

/// A float32 (rows, cols) C-order array over `m`'s values without a copy. `owner` is kept alive
/// by the array (the Python object that owns `m`), so the memory outlives every view of it as
/// long as `m` itself is not reallocated while the owner lives. Read-only unless `writable`
/// (a matrix mapped from a file must never be written).
inline py::array_t<float> matrix_view(const Matrix& m, py::handle owner, bool writable) {
  py::array_t<float> a({static_cast<py::ssize_t>(m.rows), static_cast<py::ssize_t>(m.cols)},
                       {static_cast<py::ssize_t>(m.cols * sizeof(float)),
                        static_cast<py::ssize_t>(sizeof(float))},
                       m.data.data(), owner);
  if (!writable) {
    py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  }
  return a;
}

}  // namespace recforge::python
