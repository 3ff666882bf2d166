/*
 * pipeline/fuse_register.c — registration of fusion members onto the reference sequence
 * before they are resampled onto its grid (contract in pipeline_internal.h; kernels in
 * pipeline/register/). Lives beside study.c because it writes a QC picture.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/pipeline_internal.h"
#include "pipeline/register/register.h"
#include "pipeline/write/write.h"

#define MOD "register"

/* Checkerboard of fixed vs moving before and after registration, as a PNG. */
static int write_checkerboard(const char *path, const rp_volume *fixed, const rp_volume *moving,
                              const double T[4][4])
{
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    int rc = rp_reg_checkerboard_before_after(fixed, moving, T, &pix, &w, &h);
    if (!rc)
        rc = rp_png_write(path, pix, w, h, 1, 8);
    free(pix);
    return rc;
}

/* Channel c of v as a borrowed single-channel view. */
static rp_volume channel_view(const rp_volume *v, int c)
{
    rp_volume ch = *v;
    ch.dim[3] = 1;
    ch.data = v->data + (size_t)c * rp_volume_nvox(v);
    return ch;
}

/* ---- fusion ---------------------------------------------------------------------------------- */

static const char *mode_name(int m)
{
    return m == RP_FUSION_REG_RIGID ? "rigid" : m == RP_FUSION_REG_RIGID_SCALE ? "rigid_scale"
                                                                                : "none";
}

int rp_fuse_register(const rp_conf_fusion *f, rp_volume **vols, cJSON *side, const char *out_dir,
                     const char *stem, char *err, size_t errlen)
{
    cJSON_AddStringToObject(side, "Register", mode_name(f->register_mode));
    cJSON *chans = cJSON_GetObjectItemCaseSensitive(side, "Channels");
    const rp_volume *ref = vols[f->reference];
    for (int s = 0; s < f->n_seq; s++) {
        const int mode =
            f->seq[s].register_mode >= 0 ? f->seq[s].register_mode : f->register_mode;
        if (s == f->reference || mode == RP_FUSION_REG_NONE)
            continue;
        rp_reg_params p;
        rp_reg_defaults(&p);
        p.dof = mode == RP_FUSION_REG_RIGID_SCALE ? 9 : 6;
        rp_reg_result r;
        char why[384] = "";
        rp_volume mv = channel_view(vols[s], 0), fx = channel_view(ref, 0);
        int rc = rp_register_rigid(&fx, NULL, &mv, &p, &r, why, sizeof why);
        if (rc) {
            snprintf(err, errlen, "sequence %s cannot be registered onto %s: %s", f->seq[s].name,
                     f->seq[f->reference].name, why);
            return rc;
        }
        cJSON *rj = rp_reg_result_json(&r, p.dof, p.bins);
        char path[4096], name[256];
        snprintf(name, sizeof name, "%s_register_%s.png", stem, f->seq[s].name);
        if (snprintf(path, sizeof path, "%s/%s", out_dir, name) < (int)sizeof path &&
            rp_mkdir_p(out_dir, 0755) == 0 && write_checkerboard(path, &fx, &mv, r.matrix) == 0)
            cJSON_AddStringToObject(rj, "qc", name);
        else
            RP_WARN(MOD, "fusion QC checkerboard not written path=%s", path);
        cJSON *ch = cJSON_GetArrayItem(chans, s);
        if (ch)
            cJSON_AddItemToObject(ch, "Registration", rj);
        else
            cJSON_Delete(rj);
        /* T maps reference world -> member world: the member's voxels sit at T⁻¹·A */
        double Ti[4][4], A[4][4];
        if (rp_mat4_invert(r.matrix, Ti) != 0) {
            snprintf(err, errlen, "sequence %s: singular registration result", f->seq[s].name);
            return RP_EINTERNAL;
        }
        rp_mat4_mul(Ti, vols[s]->affine, A);
        memcpy(vols[s]->affine, A, sizeof A);
        rp_volume_update_spacing(vols[s]);
        RP_INFO(MOD, "fusion rule=%s sequence=%s onto=%s moved_max_mm=%.2f rot_deg=%.2f,%.2f,%.2f",
                f->name, f->seq[s].name, f->seq[f->reference].name, r.max_displacement_mm,
                r.rotation_deg[0], r.rotation_deg[1], r.rotation_deg[2]);
    }
    return 0;
}

