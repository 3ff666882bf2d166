/*
 * dcm_meta — store's internal C view of dcmtk's header reader (store/dcm_meta.cc).
 *
 * Only store/ (and its tests) include this file. It reads the attributes the index needs
 * from a DICOM file, Part-10 or raw dataset, stopping before Pixel Data so that a 2 GB
 * multi-frame costs the same as a 2 KB SR. No dcmtk type crosses this boundary.
 */
#ifndef RP_STORE_DCM_META_H
#define RP_STORE_DCM_META_H

#include "db/db.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill `meta` (cleared first) from the file's header. Strings that are absent stay empty,
 * numbers absent stay -1 (number_of_frames 1). `reason` (may be NULL) gets a short text on
 * failure. Returns 0, RP_ENOENT (no such file) or RP_EPARSE (not readable as DICOM). UIDs
 * are NOT validated here. */
int rp_dcm_read_meta(const char *path, rp_instance_meta *meta, char *reason, size_t reasonsz);

#ifdef __cplusplus
}
#endif
#endif
