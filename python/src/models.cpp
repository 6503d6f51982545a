/// @file models.cpp
#include "common.h"

namespace recforge::python {

void bind_models(py::module_& m) { (void)m; }

}  // namespace recforge::python
