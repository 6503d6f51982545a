/// @file module.cpp
/// The extension module recforge._recforge: version and build facts, the error translation
/// (common.h) and the parts' bindings. The public API is the Python package recforge
/// (python/recforge/), which wraps this module.

#include <pybind11/pybind11.h>

#include <new>
#include <stdexcept>

#include "common.h"
#include "core/context.h"
#include "core/error.h"

namespace py = pybind11;

PYBIND11_MODULE(_recforge, m) {
  m.doc() = "recforge's engine (use the package recforge, not this module)";
  m.attr("__version__") = RECFORGE_VERSION;
  m.def("cuda_compiled", &recforge::backend::cuda_compiled,
        "Whether this build has the CUDA backend.");
  m.def("cuda_device_count", &recforge::backend::cuda_device_count,
        "The number of CUDA devices that answer (0 without CUDA, a driver or a device).");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const recforge::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const recforge::InternalError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  recforge::python::bind_models(m);
  recforge::python::bind_runs(m);
}
