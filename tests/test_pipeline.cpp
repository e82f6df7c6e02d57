// Pipeline text and files: parsing, normalized printing that parses back, and errors that name the
// bad token.
#include <doctest/doctest.h>

#include <optional>

#include "helpers.h"
#include "pass/pipeline.h"
#include "pass/preset.h"

using namespace mopt;
using namespace mopt::test;

TEST_CASE("pipeline text parses and prints back to the same pipeline") {
  const char* cases[] = {
      "eliminate-dead-code",
      "eliminate-nops,eliminate-dead-code",
      "fixpoint(eliminate-nops,eliminate-dead-code),shape-inference(strict=true)",
      "fixpoint(max-iterations=3,fixpoint(eliminate-nops),eliminate-dead-code)",
  };
  for (const char* text : cases) {
    const std::string printed = pass::print_pipeline(pass::parse_pipeline(text));
    CHECK(printed == text);
    CHECK(pass::print_pipeline(pass::parse_pipeline(printed)) == printed);
  }
  // Whitespace, option spellings and default values normalize.
  CHECK(pass::print_pipeline(pass::parse_pipeline(" eliminate-nops , shape-inference( strict = yes ) ")) ==
        "eliminate-nops,shape-inference(strict=true)");
  CHECK(pass::print_pipeline(pass::parse_pipeline("fixpoint(max-iterations=10,eliminate-nops)")) ==
        "fixpoint(eliminate-nops)");
}

TEST_CASE("the fuse preset expands to its fixpoint group and prints back to text that parses again") {
  const pass::Pipeline p = pass::parse_pipeline("fuse(max-iterations=3),eliminate-dead-code");
  REQUIRE(p.elements.size() == 2);
  CHECK(p.elements[0].is_group());
  CHECK(p.elements[0].max_iterations == 3);
  CHECK(p.elements[0].children.size() == pass::parse_pipeline(pass::kFuseGroup).elements[0].children.size());
  const std::string printed = pass::print_pipeline(p);
  CHECK(printed.rfind("fixpoint(max-iterations=3,upgrade-ir-version,shape-inference(data-propagation=true),simplify-shapes,fold-constants,", 0) == 0);
  CHECK(pass::print_pipeline(pass::parse_pipeline(printed)) == printed);
}

TEST_CASE("pipeline errors name the bad token") {
  auto error = [](const std::string& text) { return error_of([&] { pass::parse_pipeline(text); }); };
  CHECK(error("eliminate-nop").find("unknown pass 'eliminate-nop' (did you mean 'eliminate-nops'?)") != std::string::npos);
  CHECK(error("eliminate-nops,,x").find("column 16") != std::string::npos);
  CHECK(error("fuse(eliminate-nops)").find("'fuse' takes only max-iterations=N") != std::string::npos);
  CHECK(error("fsue").find("did you mean 'fuse'") != std::string::npos);
  CHECK(error("shape-inference(bogus=1)").find("has no option 'bogus'") != std::string::npos);
  CHECK(error("shape-inference(strict=maybe)").find("must be true or false, not 'maybe'") != std::string::npos);
  CHECK(error("shape-inference(eliminate-nops)").find("takes options (name=value), not a pass") != std::string::npos);
  CHECK(error("fixpoint(eliminate-nops").find("unclosed '('") != std::string::npos);
  CHECK(error("fixpoint()").find("needs at least one pass") != std::string::npos);
  CHECK(error("fixpoint(max-iterations=0,eliminate-nops)").find("positive integer") != std::string::npos);
  CHECK(error("").find("empty") != std::string::npos);
  // Usage errors map to exit code 2; the check fails if parsing stops throwing.
  std::optional<ErrorKind> kind;
  try {
    pass::parse_pipeline("nope");
  } catch (const Error& e) {
    kind = e.kind();
  }
  CHECK(kind == ErrorKind::Usage);
}

TEST_CASE("pipelines load from YAML and JSON files") {
  TempDir dir;
  write_file(dir / "p.yaml",
             "passes:\n"
             "  - eliminate-nops\n"
             "  - fixpoint:\n"
             "      max-iterations: 4\n"
             "      passes: [eliminate-dead-code, shape-inference]\n"
             "  - shape-inference: {strict: true}\n");
  CHECK(pass::print_pipeline(pass::load_pipeline_file(dir / "p.yaml")) ==
        "eliminate-nops,fixpoint(max-iterations=4,eliminate-dead-code,shape-inference),shape-inference(strict=true)");
  write_file(dir / "p.json", R"({"passes": ["eliminate-nops", {"fixpoint": {"passes": ["eliminate-dead-code"]}}]})");
  CHECK(pass::print_pipeline(pass::load_pipeline_file(dir / "p.json")) == "eliminate-nops,fixpoint(eliminate-dead-code)");
  write_file(dir / "bad.yaml", "passes:\n  - eliminate-nops\n  - no-such-pass\n");
  const std::string err = error_of([&] { pass::load_pipeline_file(dir / "bad.yaml"); });
  CHECK(err.find("line 3") != std::string::npos);
  CHECK(err.find("unknown pass 'no-such-pass'") != std::string::npos);
}

TEST_CASE("every registered pass has a summary and parses with its defaults, or says what it needs") {
  // These do nothing with their defaults: the parser refuses them before anything runs.
  const std::map<std::string, std::string> needs = {
      {"clip-weights", "clip-weights takes exactly one of range=, percentile= or sigma="},
      {"clip-activations", "clip-activations needs data=PATH"},
      {"convert-opset", "convert-opset needs opset=N"},
      {"set-ir-version", "set-ir-version needs ir-version=N"},
      {"set-static-shapes", "set-static-shapes needs shapes=, dims= or batch="},
      {"rename-values", "rename-values needs rename=OLD=NEW"}};
  for (const auto& p : pass::registered_passes()) {
    CAPTURE(p.name);
    CHECK(std::string(p.summary).size() > 10);
    if (needs.count(p.name)) {
      CHECK(error_of([&] { pass::parse_pipeline(p.name); }).find("pipeline column 1: " + needs.at(p.name)) == 0);
    } else {
      CHECK(pass::print_pipeline(pass::parse_pipeline(p.name)) == p.name);
    }
  }
}

TEST_CASE("a preset expands to the member passes its options select, each option to the pass that declares it") {
  CHECK(pass::print_pipeline(pass::parse_pipeline("convert(to=bf16, opset=13, keep-io-types=false)")) ==
        "convert-opset(opset=13),convert-precision(to=bf16,keep-io-types=false)");
  CHECK(pass::print_pipeline(pass::parse_pipeline("eliminate-nops, clip(data=calib, sigma=3, fp16-range=true)")) ==
        "eliminate-nops,clip-weights(sigma=3),clip-activations(data=calib),clip-fp16-range");
  CHECK(pass::print_pipeline(pass::parse_pipeline("fixpoint(convert(batch=1), eliminate-nops)")) ==
        "fixpoint(set-static-shapes(batch=1),eliminate-nops)");
  CHECK(pass::print_pipeline(pass::parse_pipeline("clip(fp16-range=false, range=1)")) == "clip-weights(range=1)");
  // The expansion prints as text that parses back to itself.
  const std::string expanded = pass::print_pipeline(pass::parse_pipeline("convert(dims=\"batch=1,seq=8\", to=fp16)"));
  CHECK(expanded == "set-static-shapes(dims=\"batch=1,seq=8\"),convert-precision(to=fp16)");
  CHECK(pass::print_pipeline(pass::parse_pipeline(expanded)) == expanded);
  // Every preset refuses to do nothing, and an option whose member is not selected fails with its column.
  for (const pass::PresetInfo& preset : pass::registered_presets()) {
    CAPTURE(preset.name);
    CHECK(error_of([&] { pass::parse_pipeline(preset.name); }).find("pipeline column 1: " + preset.name + ": nothing to do; give ") == 0);
    CHECK(!preset.specs.empty());
  }
  CHECK(error_of([&] { pass::parse_pipeline("eliminate-nops, convert(keep-io-types=false)"); }) ==
        "pipeline column 17: option 'keep-io-types' of 'convert' applies only with to=");
  CHECK(error_of([&] { pass::parse_pipeline("convert(to=fp8)"); }).find("must be one of fp16|bf16") != std::string::npos);
}

TEST_CASE("an option that does not apply, or is out of range, fails at parse time with its column") {
  CHECK(error_of([&] { pass::parse_pipeline("eliminate-nops, prune(method=nm, sparsity=0.3)"); }) ==
        "pipeline column 17: option 'sparsity' of pass 'prune' applies only with method=magnitude|channels (here method=nm)");
  CHECK(error_of([&] { pass::parse_pipeline("quantize(mode=dynamic, calibration=entropy)"); })
            .find("option 'calibration' of pass 'quantize' applies only with mode=static") != std::string::npos);
  CHECK(error_of([&] { pass::parse_pipeline("clip(percentile=99.9, activation-percentile=99)"); }) ==
        "pipeline column 1: option 'activation-percentile' of 'clip' applies only with data=");
  CHECK(error_of([&] { pass::parse_pipeline("prune(sparsity=1.5)"); }) == "pipeline column 1: prune: sparsity must be in [0, 1), not 1.5");
  CHECK(error_of([&] { pass::parse_pipeline("convert(opset=99)"); }) ==
        "pipeline column 9: option 'opset' of pass 'convert' must be in [1, 21], not 99");
  CHECK_NOTHROW(pass::parse_pipeline("prune(method=nm, n=1, m=4), quantize(mode=static, data=x, calibration=percentile, percentile=99)"));
}
