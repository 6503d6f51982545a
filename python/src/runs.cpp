/// @file runs.cpp
#include "common.h"

namespace recforge::python {

void bind_runs(py::module_& m) { (void)m; }

}  // namespace recforge::python
