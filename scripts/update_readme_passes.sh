#!/usr/bin/env bash
# Regenerates the README's pass table from the option tables (`mopt passes --markdown`); tests/cli_test.sh
# fails when the two differ. Usage: scripts/update_readme_passes.sh [path/to/mopt]
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=${1:-build/mopt}
table=$("$MOPT" passes --markdown)
TABLE="$table" node -e '
  const fs = require("fs");
  const s = fs.readFileSync("README.md", "utf8");
  const begin = s.indexOf("\n", s.indexOf("<!-- mopt passes --markdown")) + 1;
  const end = s.indexOf("<!-- end of mopt passes --markdown");
  if (begin <= 0 || end < begin) { console.error("README.md lacks the pass table markers"); process.exit(1); }
  fs.writeFileSync("README.md", s.slice(0, begin) + process.env.TABLE + "\n" + s.slice(end));
'
