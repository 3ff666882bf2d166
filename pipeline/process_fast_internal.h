/*
 * pipeline/process_fast_internal.h — the parts of a recipe job that run once per stack around
 * the steps (internal to pipeline/): how many cores, native samples to the float working
 * volume in one parallel pass, and how the result is stored.
 */
#ifndef RP_PIPELINE_PROCESS_FAST_INTERNAL_H
#define RP_PIPELINE_PROCESS_FAST_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "pipeline/assemble/assemble.h"
#include "pipeline/volume/volume.h"
#include "pipeline/write/write.h"

/* Threads a job uses: `requested` when > 0, else every core this process may run on (the
 * affinity mask, OMP_NUM_THREADS, a cgroup CPU quota: the smallest). */
int rp_pf_threads(int requested);

/* 1 when rp_stack_load() can hand this stack over without a contiguous copy and without
 * building the padding mask itself (integer samples, no resampling): rp_pf_to_float() then
 * reads the decoded slices where they lie and builds the mask in the same pass. */
int rp_pf_direct_ok(const rp_stack *st);

/* out[i] = slope * native[i] + inter over the stack's nz*nt slices (contiguous data or
 * zero-copy slices), in one parallel pass. pad_out (may be NULL): 1 where the stored value is
 * the file's Pixel Padding Value (or within its range), as the loader's own mask. The
 * buffers of single-frame zero-copy slices are freed as they are converted (d->bufs[i] and
 * d->slice[k] set NULL); everything else in d stays. RP_EUNSUPPORTED for RGB. pad_packed
 * (instead of pad_out, 3-D only): the same mask into a packed, zeroed rp_mask of the stack's
 * dims (volume.h), never whole as bytes. stats (may be NULL): the statistics of out as
 * written (padded voxels with their converted values), measured slice by slice in cache. */
int rp_pf_to_float(rp_stack_data *d, const rp_stack *st, const rp_dcm_info *const *infos,
                   float *out, uint8_t *pad_out, rp_mask *pad_packed, rp_vstats *stats);

/* The source of a deferred volume (volume.h) over the decoded slices of a 3-D stack of integer
 * samples in zero-copy form: its rows are the values rp_pf_to_float() and the padding fill
 * would leave in the float volume, to the bit. One parallel pass reads every slice first: it
 * builds the padding mask into pad_packed (as rp_pf_to_float; NULL: the series declares no
 * padding), counts the padding into d->n_padding, finds the fill (the lowest non-padding
 * value) and the volume's QC statistics. On success the slices and their buffers belong to
 * *out (released slice by slice as the first resampling pass finishes them) and d keeps only
 * its figures. RP_EUNSUPPORTED, with d as it was, when the stack is not of that kind or
 * every voxel is padding (the float path keeps those values). */
int rp_pf_deferred(rp_stack_data *d, const rp_stack *st, const rp_dcm_info *const *infos,
                   rp_mask *pad_packed, rp_vol_source **out);

/* Pixel Padding voxels (pad[i] != 0) get the lowest non-padding value; returns it, or NAN when
 * every voxel is padding (nothing changed). */
float rp_pf_fill_padding(float *v, const uint8_t *pad, size_t n);
/* The same with a packed mask on v's grid. */
float rp_pf_fill_padding_packed(float *v, const rp_mask *pad);

/* The sidecar / QC object describing how the image was stored. */
cJSON *rp_pf_store_json(const rp_nifti_store *st, const rp_dtype_spec *spec, int gzip_level);

#endif
