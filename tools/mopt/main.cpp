#include <fmt/format.h>
#include "io/model_io.h"
#include "util/error.h"
int main(int argc, char** argv) {
  try {
    auto m = mopt::io::load_model(argv[1]);
    auto info = mopt::io::save_model(*m, argv[2]);
    fmt::print("{} nodes, wrote {} bytes\n", m->graph().node_count(), info.file_bytes);
  } catch (const mopt::Error& e) { fmt::print(stderr, "error: {}\n", e.what()); return 1; }
  (void)argc;
}
