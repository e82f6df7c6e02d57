// Errors that reach the user. A bad model, a bad option or an I/O failure throws mopt::Error with a
// one-line message naming the problem; the CLI catches it at the top and maps its kind to an exit code
// (see README "Exit codes"). Program invariants use assert, never Error.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace mopt {

enum class ErrorKind {
  Failure,  // exit 1: bad model, I/O failure, a pass that could not run
  Usage,    // exit 2: bad command line, unknown pass or option, malformed pipeline
  Unchanged,  // exit 1: the command's own pass changed nothing, so nothing was written
};

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, ErrorKind kind = ErrorKind::Failure)
      : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// A message from a library (ONNX's checker, shape inference) folded onto one line, as mopt's errors are.
inline std::string one_line(std::string message) {
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return message;
}

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void usage_error(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...), ErrorKind::Usage);
}

}  // namespace mopt
