// _mopt: the Python binding of libmopt's C++ API (include/mopt/mopt.h). python/mopt/__init__.py turns
// keyword arguments and numpy arrays into the tool's options; this file only crosses the language boundary.
// Errors become mopt.Error (exit code 1) or mopt.UsageError (2, also a ValueError) with the tool's message.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mopt/mopt.h"

namespace py = pybind11;

namespace {

py::dict result_dict(const mopt::api::Result& r) {
  py::dict d;
  d["exit_code"] = r.exit_code;
  d["output"] = r.output;
  d["report_path"] = r.report_path;
  d["report_json"] = r.report_json;
  d["failed_gates"] = r.failed_gates;
  return d;
}

}  // namespace

PYBIND11_MODULE(_mopt, m) {
  m.doc() = "The binding of libmopt; use the mopt package (import mopt).";
  static py::exception<mopt::api::Error> error(m, "Error", PyExc_RuntimeError);
  error.attr("__module__") = "mopt";  // shown as mopt.Error, where users catch it
  static py::object usage_error = [&] {
    py::object bases = py::make_tuple(error, py::handle(PyExc_ValueError));
    py::object type = py::reinterpret_steal<py::object>(
        PyErr_NewExceptionWithDoc("mopt.UsageError", "A bad call: unknown option, bad value (the tool's exit code 2).", bases.ptr(), nullptr));
    if (!type) throw py::error_already_set();
    type.attr("__module__") = "mopt";
    m.attr("UsageError") = type;
    return type;
  }();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mopt::api::Error& e) {
      PyErr_SetString(e.exit_code() == 2 ? usage_error.ptr() : error.ptr(), e.what());
    }
  });

  m.def("version", &mopt::api::version);
  // Both release the GIL: a quantization with calibration runs for seconds to minutes.
  m.def(
      "run",
      [](const std::string& command, const std::string& input, const mopt::api::Options& options) {
        mopt::api::Result r;
        {
          py::gil_scoped_release release;
          r = mopt::api::run(command, input, options);
        }
        return result_dict(r);
      },
      py::arg("command"), py::arg("input"), py::arg("options"));
  m.def(
      "compare",
      [](const std::string& original, const std::string& candidate, const mopt::api::Options& options) {
        mopt::api::Result r;
        {
          py::gil_scoped_release release;
          r = mopt::api::compare(original, candidate, options);
        }
        return result_dict(r);
      },
      py::arg("original"), py::arg("candidate"), py::arg("options"));

  py::class_<mopt::api::Model>(m, "Model", "A model in memory: load, run passes, save, report.")
      .def_static("load", &mopt::api::Model::load, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def("run", &mopt::api::Model::run, py::arg("pipeline"), py::call_guard<py::gil_scoped_release>())
      .def("save", &mopt::api::Model::save, py::arg("path"), py::arg("external_data_threshold") = 0,
           py::call_guard<py::gil_scoped_release>())
      .def("report_json", &mopt::api::Model::report_json);
}
