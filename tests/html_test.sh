#!/usr/bin/env bash
# HTML report test: `mopt quantize --html` on squeezenet (static int8, its real input) and ppocrv4_det (static,
# its real input), and `mopt compare --html`, rendered in headless Chromium (Debian's chromium):
# - the page loads with no console message at all (no script error, no blocked resource: it has none);
# - every number the rendered page shows carries data-json (its JSON pointer in the report) and
#   data-value; each value equals the report's, and the text shown agrees with it (units converted);
# - the sections are there (sizes, largest tensors, operators, passes, accuracy with its data, per-layer
#   chart, gates when set);
# - a screenshot of each page is kept as a test artifact in the build folder (html-artifacts/).
# Skips (exit 77, loudly) when chromium is missing; MOPT_REQUIRE_CHROMIUM=1 (scripts/test.sh) makes that
# a failure.
# Usage: tests/html_test.sh MOPT_BINARY [ARTIFACT_DIR]
set -euo pipefail
mopt=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
artifacts=${2:-$(dirname "$mopt")/html-artifacts}
src=$(cd "$(dirname "$0")/.." && pwd)
M=$src/../shared/models
chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chrome" ]; then
  echo "SKIP: chromium is not installed (apt-get install chromium) -- the HTML test did not run" >&2
  [ "${MOPT_REQUIRE_CHROMIUM:-0}" = 1 ] && { echo "FAIL: MOPT_REQUIRE_CHROMIUM=1 and chromium is missing" >&2; exit 1; }
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$artifacts"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$mopt" quantize "$M/vision/squeezenet1.1_fp32.onnx" -o "$tmp/sq.onnx" --data "$M/vision/inputs/squeezenet_fish_fp32" --min-cosine 0.99 \
  --html "$tmp/squeezenet.html" -q || fail "quantize squeezenet"
"$mopt" quantize "$M/ocr/ppocrv4_det.onnx" -o "$tmp/det.onnx" --data "$M/ocr/inputs" --html "$tmp/ppocrv4_det.html" -q ||
  fail "quantize ppocrv4_det"
"$mopt" compare "$M/vision/squeezenet1.1_fp32.onnx" "$tmp/sq.onnx" --data "$M/vision/inputs/squeezenet_fish_fp32" --per-layer \
  --report "$tmp/compare.json" --html "$tmp/compare.html" -q || fail "compare"
cp "$tmp/sq.onnx.report.json" "$tmp/squeezenet.json"
cp "$tmp/det.onnx.report.json" "$tmp/ppocrv4_det.json"

for page in squeezenet ppocrv4_det compare; do
  # --enable-logging=stderr puts every console message of the page on stderr as "CONSOLE(...)".
  timeout 120 "$chrome" --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/profile" \
    --enable-logging=stderr --v=0 --virtual-time-budget=2000 --dump-dom "file://$tmp/$page.html" >"$tmp/$page.dom" 2>"$tmp/$page.console" ||
    fail "chromium could not render $page.html: $(tail -5 "$tmp/$page.console")"
  if grep -E 'CONSOLE|Refused to|Uncaught' "$tmp/$page.console"; then fail "$page.html: console messages (above)"; fi
  timeout 120 "$chrome" --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/profile" --hide-scrollbars \
    --window-size=1200,2600 --screenshot="$artifacts/$page.png" "file://$tmp/$page.html" >/dev/null 2>&1 ||
    fail "chromium could not take a screenshot of $page.html"
  [ -s "$artifacts/$page.png" ] || fail "no screenshot of $page.html"
  /usr/bin/python3 - "$tmp/$page.dom" "$tmp/$page.json" "$page" <<'PY' || fail "$page.html does not say what its report says (above)"
import html.parser, json, re, sys
dom_path, report_path, page = sys.argv[1:]
report = json.load(open(report_path))
def at(pointer):
    v = report
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        v = v[int(part)] if isinstance(v, list) else v[part]
    return v
class Numbers(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.items = []; self.open = None; self.ids = set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a: self.ids.add(a["id"])
        if "data-json" in a:
            self.open = [a["data-json"], a["data-value"], ""]; self.items.append(self.open)
    def handle_data(self, data):
        if self.open is not None: self.open[2] += data
    def handle_endtag(self, tag):
        if tag in ("span", "text"): self.open = None
p = Numbers(); p.feed(open(dom_path).read())
units = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "s": 1, "ms": 1e-3}
errors = []
for pointer, value, shown in p.items:
    expected = at(pointer)
    if json.loads(value) != expected:
        errors.append("%s: page %s, report %s" % (pointer, value, expected))
    m = re.fullmatch(r"\s*(-?[0-9.e+-]+)\s*([A-Za-z]*)\s*", shown)
    if not m:
        errors.append("%s: shown as %r" % (pointer, shown)); continue
    number = float(m.group(1)) * units.get(m.group(2), 1)
    if abs(number - expected) > max(5e-3 * abs(expected), 1e-6 * max(1.0, abs(expected)), 0.051 * units.get(m.group(2), 1) if m.group(2) in ("B", "KiB", "MiB", "GiB") else 0):
        errors.append("%s: shown %r for %s" % (pointer, shown, expected))
need = {"/accuracy/samples", "/invocation/exit_status"}
if page != "compare":
    need |= {"/input/file_bytes", "/output/file_bytes", "/output/stats/largest_tensors/0/bytes"}
    for section in ("sizes", "largest", "operators", "passes", "accuracy", "outputs", "layers", "verdict"):
        if section not in p.ids: errors.append("no section '%s'" % section)
    if page == "squeezenet" and "gates" not in p.ids: errors.append("no gates section")
shown_pointers = {i[0] for i in p.items}
errors += ["%s is not on the page" % n for n in sorted(need - shown_pointers)]
if not any(i[0].startswith("/accuracy/layers/worst_first/") for i in p.items): errors.append("no per-layer error bars")
if "measured on" not in open(dom_path).read().lower(): errors.append("the accuracy data is not named")
for e in errors[:20]: print("FAIL: %s: %s" % (page, e), file=sys.stderr)
if errors: sys.exit(1)
print("ok: %s.html: %d numbers equal the report's" % (page, len(p.items)))
PY
done
echo "ok: screenshots in $artifacts"
