// The only pybind11 file: it checks arguments, releases the GIL and calls the pure C++ kernels.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
  m.doc() = "medrefine native kernels (private; use the medrefine package facade)";
  m.attr("ABI_VERSION") = 1;
}
