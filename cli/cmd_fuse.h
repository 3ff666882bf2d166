/* cli/cmd_fuse — study-level commands (H10): `radprep fuse`, `radprep fit nyul`, and
 * `radprep process DIR --fusion NAME` (called from cmd_process.c). Internal to cli/. */
#ifndef RP_CLI_CMD_FUSE_H
#define RP_CLI_CMD_FUSE_H

#include "conf/conf.h"

/* radprep fuse --rule NAME --study UID: queue the fusion of that study now (operator). */
int rp_cli_fuse(int argc, char **argv, const rp_conf *c);
/* radprep fit nyul RULE [--out MODEL.json] [--max N] | fit nyul --dir DIR... --out MODEL.json */
int rp_cli_fit(int argc, char **argv, const rp_conf *c);
/* 1 when argv holds --fusion (cmd_process.c hands the command over). */
int rp_cli_has_fusion_option(int argc, char **argv);
/* radprep process DIR... --fusion NAME --out OUT */
int rp_cli_process_fusion(int argc, char **argv, const rp_conf *c);

#endif
