/*
 * pipeline/register/result_json.c — a registration result as the JSON object the sidecar
 * and the transform file carry (contract in register.h).
 */
#include <cjson/cJSON.h>

#include "pipeline/register/register.h"

cJSON *rp_reg_matrix_json(const double m[4][4])
{
    cJSON *rows = cJSON_CreateArray();
    for (int r = 0; r < 4; r++)
        cJSON_AddItemToArray(rows, cJSON_CreateDoubleArray(m[r], 4));
    return rows;
}

cJSON *rp_reg_result_json(const rp_reg_result *r, int dof, int bins)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", dof == 9 ? "rigid_scale" : "rigid");
    cJSON_AddNumberToObject(o, "dof", dof);
    cJSON_AddStringToObject(o, "maps", "reference world (RAS mm) -> this series' world");
    cJSON_AddItemToObject(o, "matrix", rp_reg_matrix_json(r->matrix));
    cJSON_AddItemToObject(o, "rotation_deg", cJSON_CreateDoubleArray(r->rotation_deg, 3));
    cJSON_AddItemToObject(o, "translation_mm", cJSON_CreateDoubleArray(r->translation_mm, 3));
    if (dof == 9)
        cJSON_AddItemToObject(o, "scale", cJSON_CreateDoubleArray(r->scale, 3));
    cJSON_AddItemToObject(o, "center_mm", cJSON_CreateDoubleArray(r->center_mm, 3));
    cJSON_AddStringToObject(o, "rotation_order", "R = Rz Ry Rx about center_mm");
    cJSON *m = cJSON_AddObjectToObject(o, "metric");
    cJSON_AddStringToObject(m, "name", "MattesMutualInformation");
    cJSON_AddNumberToObject(m, "bins", bins);
    cJSON_AddNumberToObject(m, "initial", r->mi_initial);
    cJSON_AddNumberToObject(m, "final", r->mi_final);
    cJSON *mv = cJSON_AddObjectToObject(o, "moved_mm");
    cJSON_AddNumberToObject(mv, "max", r->max_displacement_mm);
    cJSON_AddNumberToObject(mv, "rms", r->rms_displacement_mm);
    cJSON_AddItemToObject(o, "iterations", cJSON_CreateIntArray(r->iterations, r->levels));
    if (r->kept_identity)
        cJSON_AddStringToObject(o, "note",
                                "MI at the optimum was below MI at the scanner geometry (an "
                                "ill-posed fit): the scanner geometry was kept");
    return o;
}


int rp_reg_checkerboard_before_after(const rp_volume *fixed, const rp_volume *moving,
                                     const double T[4][4], uint8_t **pix, int *w, int *h)
{
    double I[4][4];
    rp_mat4_identity(I);
    rp_volume *before = NULL, *after = NULL;
    int rc = rp_register_resample(moving, fixed, I, 1, &before);
    if (!rc)
        rc = rp_register_resample(moving, fixed, T, 1, &after);
    if (!rc) {
        const rp_volume *rows[2] = {before, after};
        rc = rp_reg_checkerboard(fixed, rows, 2, 12, pix, w, h);
    }
    rp_volume_free(before);
    rp_volume_free(after);
    return rc;
}
