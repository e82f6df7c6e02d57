// libFuzzer target: arbitrary bytes as an .onnx model through everything a command does with one:
// load, the validation layer, IR invariants, ONNX's checker, the fuse pipeline (shape inference, constant
// folding with the executor's kernels, every fusion) and one executor run on random inputs. A clean
// mopt::Error is the expected answer to bad input; anything else (a crash, a sanitizer report, a hang
// past libFuzzer's -timeout, another exception type) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/feeds.h"
#include "exec/executor.h"
#include "io/model_io.h"
#include "ir/validate.h"
#include "ir/verify.h"
#include "pass/manager.h"
#include "pass/pipeline.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mopt;
  static const bool setup = [] {
    exec::set_run_time_limit(2.0);
    exec::set_max_tensor_bytes(256u << 20);  // a model may ask for any tensor; the fuzzer's memory is bounded
    exec::set_thread_count(1);
    return true;
  }();
  (void)setup;
  std::unique_ptr<ir::Model> model;
  try {
    model = io::load_model_from_bytes(std::string(reinterpret_cast<const char*>(data), size));
    ir::validate_model(*model);
    ir::verify_invariants(*model);
  } catch (const Error&) {
    return 0;
  }
  try {
    data::Feeds feeds = data::random_feeds(*model, {}, 0);
    exec::Executor executor(*model, exec::ExecutorOptions{1, false, nullptr});
    executor.run(feeds);
  } catch (const Error&) {
  }
  try {
    pass::run_pipeline(pass::parse_pipeline("fuse"), *model);
  } catch (const Error&) {
  }
  return 0;
}
