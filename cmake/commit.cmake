# Writes OUT, a header defining MOPT_COMMIT from `git describe` of SOURCE ("unknown" outside a git
# checkout). Run at every build, not at configure time, so --version names the commit actually built;
# the file is rewritten only when the text changes, so an unchanged tree recompiles nothing.
execute_process(COMMAND git describe --always --dirty --abbrev=12 WORKING_DIRECTORY ${SOURCE}
  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit unknown)
endif()
file(CONFIGURE OUTPUT ${OUT} CONTENT "#define MOPT_COMMIT \"${commit}\"\n")
