/*
 * pipeline/steps_zz_fallback.c — empty stand-ins for step tables that are not (yet) part of
 * the build, so that the library always links.
 *
 * Why a separate file with this name: a weak definition inside recipe.c would satisfy the
 * linker before it ever looked for steps_mr.o in the static library, silently hiding the real
 * table. Here the stand-in lives in its own object, which CMake's sorted glob puts after
 * steps_mr.c / steps_xr.c in the archive; the linker takes the first member that defines a
 * missing symbol, so the real table wins whenever it exists, and being weak it also wins if
 * both objects end up linked. tests/pipeline/test_recipe.c checks that the tables are found.
 */
#include "pipeline/step.h"

__attribute__((weak)) const rp_step_def rp_steps_mr[] = {{0}};
__attribute__((weak)) const rp_step_def rp_steps_xr[] = {{0}};
