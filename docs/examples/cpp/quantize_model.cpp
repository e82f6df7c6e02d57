// Quantizes a model with calibration data through mopt's C++ API and prints what the report says.
// Usage: quantize_model MODEL OUTPUT CALIBRATION_DATA
// Exit code as the tool's: 0 ok, 1 error, 2 usage, 3 a quality gate failed.
#include <mopt/mopt.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL OUTPUT CALIBRATION_DATA\n", argv[0]);
    return 2;
  }
  try {
    const mopt::api::Result result = mopt::api::run(
        "quantize", argv[1], {{"output", argv[2]}, {"data", argv[3]}, {"per-channel", "true"}, {"min-cosine", "0.99"}, {"quiet", "true"}});
    std::printf("%s\nwrote %s, report %s (%zu bytes of JSON)\n", mopt::api::version().c_str(), result.output.c_str(),
                result.report_path.c_str(), result.report_json.size());
    for (const std::string& gate : result.failed_gates) std::printf("gate failed: %s\n", gate.c_str());
    return result.exit_code;
  } catch (const mopt::api::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
}
