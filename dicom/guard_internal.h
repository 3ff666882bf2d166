/* Structure guard run on a file before dcmtk's reader sees it (private to dicom/).
 *
 * dcmtk reads, searches and frees sequences recursively: a file with sequences nested
 * thousands deep overflows the thread's stack and kills the process. rp_dcm_guard() walks the
 * element headers of the file without recursion (values are skipped, not read) and refuses
 * nesting deeper than RP_DCM_MAX_DEPTH or more than RP_DCM_MAX_ELEMENTS elements. Whatever it
 * cannot follow (truncation, a length past the end) it leaves to dcmtk,
 * which reports such files as errors without recursing further than the bytes it could read.
 * A deflated dataset is inflated and walked like bytes in memory (below): dcmtk reads it
 * eagerly, allocating whatever length an element declares. */
#ifndef RP_DICOM_GUARD_INTERNAL_H
#define RP_DICOM_GUARD_INTERNAL_H

#include <stddef.h>

#define RP_DCM_MAX_DEPTH 64          /* sequences and items; real objects stay below ~20 */
#define RP_DCM_MAX_ELEMENTS 20000000 /* headers walked in one file */

/* 0, RP_EUNSUPPORTED with the reason in err when the file's structure exceeds a bound, or
 * RP_EPARSE when an element of its deflated dataset runs past the end (a file that cannot be
 * opened is 0: the reader reports it). */
int rp_dcm_guard(const char *path, char *err, size_t errlen);
/* The same over bytes in memory (a received instance), stricter: dcmtk reads a memory stream
 * eagerly and would allocate any declared length, so an element before Pixel Data that runs
 * past `len` is RP_EPARSE (reason in err), and nothing after Pixel Data is walked. */
int rp_dcm_guard_mem(const void *buf, size_t len, char *err, size_t errlen);

#ifdef __cplusplus
class DcmDataset;
/* Names and descriptions in UTF-8: a dataset whose Specific Character Set is not ASCII or
 * UTF-8 (ISO_IR 100, ISO 2022 ...) is converted in memory with dcmtk's converter (iconv);
 * when it cannot be, the values stay as they are. */
void rp_dcm_to_utf8(DcmDataset *ds);
#endif

#endif
