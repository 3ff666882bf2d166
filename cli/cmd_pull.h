/* cli/cmd_pull — query/retrieve from a PACS (docs/retrieve.md). Internal to cli/.
 *   radprep find --peer NAME [keys...] [--level study|series|image] [--json]
 *   radprep pull --peer NAME --study UID|--series UID|--accession N|--file LIST [--dry-run]
 *   radprep pull NAME            (a [pull NAME] section: the systemd timer's command)
 *   radprep pulls [NAME] [--items ID] [--json]
 */
#ifndef RP_CLI_CMD_PULL_H
#define RP_CLI_CMD_PULL_H

#include "conf/conf.h"

int rp_cli_find(int argc, char **argv, const rp_conf *c);
int rp_cli_pull(int argc, char **argv, const rp_conf *c);
int rp_cli_pulls(int argc, char **argv, const rp_conf *c);

#endif
