// util/log: fitting text to a terminal's width (wrapping at spaces with a hanging indent, eliding words
// too wide for any line, colours not counted) and the display width it rests on.
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "util/log.h"

using namespace mopt;

namespace {
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
}  // namespace

TEST_CASE("display width counts code points and skips colour escapes") {
  CHECK(log::display_width("abc") == 3);
  CHECK(log::display_width("a\u2026b") == 3);
  CHECK(log::display_width("\033[1;31mred\033[0m") == 3);
  CHECK(log::display_width("") == 0);
}

TEST_CASE("fit leaves short lines and width 0 alone") {
  const std::string text = "short line\n  indented\n";
  CHECK(log::fit(text, 80) == text);
  const std::string long_line(300, 'x');
  CHECK(log::fit(long_line, size_t{0}) == long_line);
}

TEST_CASE("fit wraps at spaces with the continuation indented two more than the line") {
  const std::string fitted = log::fit("  note: measured on the calibration data itself (1 sample; too small)", 30);
  const auto lines = lines_of(fitted);
  REQUIRE(lines.size() > 1);
  CHECK(lines[0].rfind("  note:", 0) == 0);
  for (size_t i = 1; i < lines.size(); ++i) CHECK(lines[i].rfind("    ", 0) == 0);
  std::string joined;  // no word lost or cut
  for (const auto& l : lines) joined += l.substr(l.find_first_not_of(' ')) + " ";
  CHECK(joined == "note: measured on the calibration data itself (1 sample; too small) ");
  for (const auto& l : lines) CHECK(log::display_width(l) <= 30);
}

TEST_CASE("fit elides a word too wide for any line, keeping its head and tail") {
  const std::string path = "../shared/models/vision/inputs/squeezenet_fish_fp32/a_very_long_name.npy";
  const auto lines = lines_of(log::fit("  pass quantize(data=" + path + ")  0.3 s", 40));
  REQUIRE(lines.size() == 2);
  CHECK(log::display_width(lines[0]) == 40);
  CHECK(lines[0].rfind("  pass quantize(data=", 0) == 0);  // elided where it stands: the row keeps its label
  CHECK(lines[0].find("\u2026") != std::string::npos);
  CHECK(lines[0].substr(lines[0].size() - 5) == ".npy)");
  CHECK(lines[1] == "    0.3 s");
}

TEST_CASE("fit does not count or cut colour escapes") {
  const std::string warning = "\033[33mwarning:\033[0m one two three four five six seven";
  const auto lines = lines_of(log::fit(warning, 24));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "\033[33mwarning:\033[0m one two three");
  CHECK(lines[1] == "  four five six seven");
  for (const auto& l : lines) CHECK(log::display_width(l) <= 24);
}

TEST_CASE("fit never loops or drops text on a line of spaces or a tiny width") {
  CHECK(log::fit("     ", 3) == "     ");
  const auto lines = lines_of(log::fit("abcdef ghijkl", 4));
  REQUIRE(lines.size() == 2);
  CHECK(log::display_width(lines[0]) <= 4);
}
