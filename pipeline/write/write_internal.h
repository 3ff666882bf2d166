/*
 * pipeline/write/write_internal.h — helpers shared by the dcmtk writers of rp_write
 * (derived.cc, overlay.cc, sr.cc). C++ only, never included outside pipeline/write/.
 * They live in derived.cc; see there for the reasons behind each.
 */
#ifndef RP_PIPELINE_WRITE_INTERNAL_H
#define RP_PIPELINE_WRITE_INTERNAL_H

/* dcmtk's headers stay in the adapters (*.cc), which include them before this file. */
class DcmFileFormat;
class DcmItem;
class DcmTagKey;

#include <initializer_list>
#include <string>
#include <vector>

extern "C" {
#include "pipeline/write/write.h"
}

namespace rpw
{

/* DS text of v (at most 16 characters). */
std::string ds(double v);
std::string gen_uid(const char *root);
void now_da_tm(std::string &da, std::string &tm);
std::string dir_of(const std::string &p);
/* temp name, fsync, rename */
int save_atomic(DcmFileFormat &ff, const std::string &path);
/* The header of a source file (everything before Pixel Data) as a dataset. */
int load_header(const char *path, DcmFileFormat &ff);
std::string get_str(DcmItem *it, const DcmTagKey &k);
/* Patient, Patient Study, General Study modules copied from src (never invented). */
int copy_patient_study(DcmItem *src, DcmItem *dst);
void copy_if_present(DcmItem *src, DcmItem *dst, std::initializer_list<DcmTagKey> keys);
void copy_or_empty(DcmItem *src, DcmItem *dst, std::initializer_list<DcmTagKey> keys);
void put_laterality(DcmItem *src, DcmItem *dst);
void put_code(DcmItem *item, const char *value, const char *scheme, const char *meaning);
int series_number(const rp_derived_opts *o, DcmItem *src);

struct vol_geom {
    double row_dir[3], col_dir[3], normal[3]; /* LPS unit vectors */
    double spacing_x, spacing_y, spacing_z;   /* mm */
    double origin_lps[3];
    double step_lps[3]; /* affine column 2 in LPS */
};
void affine_to_geom(const double a[4][4], vol_geom &g);
/* Patient Orientation letters of a direction (LPS) */
std::string orient_letters(const double d[3]);
void slice_ipp(const vol_geom &g, int k, double out[3]);

/* A source slice, for references and for matching derived slices to their sources. */
struct src_slice {
    std::string sop_class, sop_instance, series_uid;
    double ipp[3];
    int has_ipp;
};
int read_sources(const char *const *files, size_t n, std::vector<src_slice> &out);
std::vector<size_t> sources_for(const std::vector<src_slice> &src, const double normal[3],
                                const double p[3], double thick);

/* Segmented Property Category and Type (SCT) for the masks radprep makes. */
struct seg_codes {
    const char *cat_value, *cat_meaning, *type_value, *type_meaning;
};
seg_codes codes_for_mask(const char *name);
/* `word` appears in `text` as a whole word (blank or comma separated). */
int has_word(const char *text, const char *word);

/* mask resampled (nearest neighbour, through both affines) onto the grid dim/affine; the
 * mask's own data when the grids are the same. Empty vector: out of memory. */
std::vector<uint8_t> mask_on_grid(const rp_mask *m, const int dim[3], const double affine[4][4]);

} // namespace rpw

#endif
