/* dicom/mr_vendor_internal.h — private to dicom/: the Siemens CSA reader shared by decode.cc
 * and mr_vendor.cc, and the reader of vendor MR details (diffusion, phase encoding, slice
 * times) that rp_dcm_read_info() calls once the frames are filled. */
#ifndef RP_DICOM_MR_VENDOR_INTERNAL_H
#define RP_DICOM_MR_VENDOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dicom/dicom.h"

/* C++ only (decode.cc, mr_vendor.cc); dcmtk's headers stay in the adapters themselves. */
class DcmDataset;

/* Siemens CSA header (SV10) bytes p[0..n): the numeric values of the first items of the
 * element called `name` (at most maxvals). Returns how many were read; 0 when absent. */
int rp_dcm_csa_find(const uint8_t *p, size_t n, const char *name, double *vals, int maxvals);

/* Fill in->mr_acquisition_type, inplane_pe_dir, pe_positive, bvec_frame, tile_times_ms and
 * the frames' b_value / b_vec where the standard tags left them empty, from the vendors'
 * private elements. Needs in->manufacturer, in->mosaic_images and in->frame set. Never
 * fails: what cannot be read stays unknown. */
void rp_dcm_read_mr_vendor(DcmDataset *ds, rp_dcm_info *in);

#endif
