/* cli/cmd_process_stub — PLACEHOLDER until the pipeline engineer's cli/cmd_process.c lands.
 * That file defines rp_cli_process(); whoever adds it deletes this stub in the same commit. */
#include "cli/cli.h"

int rp_cli_process(int argc, char **argv, const rp_conf *c)
{
    (void)argc;
    (void)argv;
    (void)c;
    return rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "not available in this build yet");
}
