/* cli/cmd_audit — `radprep audit --study UID [--json]`: who sent a study and when. Lists every
 * instance of the study with its calling AE title, peer host, received time and the transport
 * of the association that brought it (plain, or TLS with version, cipher and the peer
 * certificate's subject), taken from the association events of the audit trail. */
#ifndef RP_CLI_CMD_AUDIT_H
#define RP_CLI_CMD_AUDIT_H

#include "conf/conf.h"

int rp_cli_audit(int argc, char **argv, const rp_conf *c);

#endif
