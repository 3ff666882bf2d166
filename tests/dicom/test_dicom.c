/*
 * Unit tests for dicom/'s header reads (rp_dcm_read_meta, rp_dcm_read_ref,
 * rp_dcm_read_header_bytes): a real CT slice and a raw dataset from $RP_SHARED_DATA with
 * values checked against pydicom's reading of the same files, an over-long UID, and every
 * kind of bad file (garbage, truncated, empty, missing, the malformed/ set): an error with a
 * reason or a clean read, never a crash. Pixel decoding is tested in tests/pipeline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "dicom/dicom.h"

static char g_tmp[256];
static const char *g_data;

#define CT1 "ct_chest_lidc0001/000001.dcm"
#define CT1_SOP "1.3.6.1.4.1.14519.5.2.1.6279.6001.143451261327128179989900675595"
#define CT1_SERIES "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
#define CT1_STUDY "1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178"
#define CR_RAW "xray/cr_chest_fuji_mono1_no_part10_header.dcm"

static const char *shared(const char *rel, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", g_data, rel);
    struct stat st;
    if (stat(buf, &st) != 0)
        fail_msg("shared test data missing: %s (set RP_SHARED_DATA)", buf);
    return buf;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void test_meta_ct(void **st)
{
    (void)st;
    char p[1024], why[256];
    rp_dcm_meta m;
    assert_int_equal(rp_dcm_read_meta(shared(CT1, p, sizeof p), &m, why, sizeof why), 0);
    assert_string_equal(m.sop_instance_uid, CT1_SOP);
    assert_string_equal(m.series_uid, CT1_SERIES);
    assert_string_equal(m.study_uid, CT1_STUDY);
    assert_string_equal(m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    assert_string_equal(m.transfer_syntax_uid, "1.2.840.10008.1.2.1");
    assert_string_equal(m.modality, "CT");
    assert_string_equal(m.patient_id, "LIDC-IDRI-0001");
    assert_int_equal(m.instance_number, 80);
    assert_int_equal(m.series_number, 3000566);
    assert_int_equal(m.number_of_frames, 1);
    assert_true(fabs(m.slice_thickness - 2.5) < 1e-9);
    assert_int_equal(m.file_size, 526464);
}

static void test_meta_raw_dataset(void **st)
{
    (void)st;
    char p[1024];
    rp_dcm_meta m;
    assert_int_equal(rp_dcm_read_meta(shared(CR_RAW, p, sizeof p), &m, NULL, 0), 0);
    assert_string_equal(m.modality, "CR");
    assert_string_equal(m.sop_instance_uid, "1.2.392.200036.9125.0.19950720112207");
    assert_string_equal(m.transfer_syntax_uid, "1.2.840.10008.1.2"); /* detected */
}

static void test_ref_file_uid(void **st)
{
    (void)st;
    char p[1024], why[256];
    rp_dcm_ref r;
    assert_int_equal(rp_dcm_read_ref(shared(CT1, p, sizeof p), &r, why, sizeof why), 0);
    assert_string_equal(r.sop_instance_uid, CT1_SOP);
    assert_string_equal(r.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    assert_string_equal(r.series_uid, CT1_SERIES);
    assert_string_equal(r.study_uid, CT1_STUDY);
    assert_int_equal(r.has_ipp, 1);
    assert_true(fabs(r.ipp[0] - -166.0) < 1e-6);
    assert_true(fabs(r.ipp[1] - -171.699997) < 1e-6);
    assert_true(fabs(r.ipp[2] - -207.5) < 1e-6);
    /* a file without a position (an SR): the UIDs, has_ipp 0 */
    assert_int_equal(rp_dcm_read_ref(shared("non_image_objects/sr_comprehensive.dcm", p, sizeof p),
                                     &r, why, sizeof why),
                     0);
    assert_true(r.sop_instance_uid[0] != '\0');
    assert_int_equal(r.has_ipp, 0);
    /* a directory is not a file */
    assert_int_equal(rp_dcm_read_ref(shared("non_image_objects", p, sizeof p), &r, why, sizeof why),
                     RP_EPARSE);
    assert_true(why[0] != '\0');
}

static void test_header_bytes(void **st)
{
    (void)st;
    char p[1024], why[256];
    void *b = NULL;
    size_t n = 0;
    assert_int_equal(rp_dcm_read_header_bytes(shared(CT1, p, sizeof p), &b, &n, why, sizeof why),
                     0);
    assert_non_null(b);
    const unsigned char *u = b;
    /* Explicit VR Little Endian, no meta group: starts with a group 0008 element with a VR */
    assert_true(n > 100 && n < 64 * 1024);
    assert_int_equal(u[0] | (u[1] << 8), 0x0008);
    assert_true(u[4] >= 'A' && u[4] <= 'Z' && u[5] >= 'A' && u[5] <= 'Z');
    assert_non_null(memmem(b, n, CT1_SOP, strlen(CT1_SOP)));
    /* stops before Pixel Data */
    static const unsigned char pixel_tag[] = {0xE0, 0x7F, 0x10, 0x00};
    assert_null(memmem(b, n, pixel_tag, sizeof pixel_tag));
    free(b);
}

static void test_long_uid_is_never_cut_valid(void **st)
{
    (void)st;
    /* raw Explicit VR LE dataset: SOP Class, a 70-character SOP Instance UID, Modality */
    unsigned char ds[256];
    size_t d = 0;
    const char *cls = "1.2.840.10008.5.1.4.1.1.7";
    char uid[71];
    memset(uid, '1', 70);
    uid[70] = '\0';
    uid[1] = '.';
    struct {
        unsigned g, e;
        const char *vr, *v;
    } el[] = {{8, 0x16, "UI", cls}, {8, 0x18, "UI", uid}, {8, 0x60, "CS", "OT"}};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(el[i].v), pad = len & 1;
        ds[d++] = el[i].g & 0xff, ds[d++] = el[i].g >> 8;
        ds[d++] = el[i].e & 0xff, ds[d++] = el[i].e >> 8;
        ds[d++] = (unsigned char)el[i].vr[0], ds[d++] = (unsigned char)el[i].vr[1];
        ds[d++] = (len + pad) & 0xff, ds[d++] = (unsigned char)((len + pad) >> 8);
        memcpy(ds + d, el[i].v, len);
        d += len;
        if (pad)
            ds[d++] = el[i].vr[0] == 'U' ? 0 : ' ';
    }
    char f[512];
    snprintf(f, sizeof f, "%s/long_uid.dcm", g_tmp);
    write_bytes(f, ds, d);
    rp_dcm_meta m;
    rp_dcm_ref r;
    assert_int_equal(rp_dcm_read_meta(f, &m, NULL, 0), 0);
    assert_int_equal(strlen(m.sop_instance_uid), 64);
    assert_non_null(strstr(m.sop_instance_uid, "..."));
    assert_string_equal(m.modality, "OT");
    assert_int_equal(rp_dcm_read_ref(f, &r, NULL, 0), 0);
    assert_non_null(strstr(r.sop_instance_uid, "..."));
    assert_int_equal(r.has_ipp, 0);
}

/* Every function on one bad file: an error with a reason, or (for files dcmtk can still
 * read up to Pixel Data) a clean success. Never a crash, never a leak of a half result. */
static int all_on(const char *path, int want)
{
    char why[256] = "";
    rp_dcm_meta m;
    rp_dcm_ref r;
    void *b = (void *)1;
    size_t n = 1;
    int rc1 = rp_dcm_read_meta(path, &m, why, sizeof why);
    if (rc1 != 0)
        assert_true(why[0] != '\0');
    int rc2 = rp_dcm_read_ref(path, &r, why, sizeof why);
    int rc3 = rp_dcm_read_header_bytes(path, &b, &n, why, sizeof why);
    if (rc3 != 0) {
        assert_null(b);
        assert_int_equal(n, 0);
    }
    free(rc3 == 0 ? b : NULL);
    if (want != 1) {
        assert_int_equal(rc1, want);
        assert_int_equal(rc2, want == RP_ENOENT ? RP_EPARSE : want);
        assert_int_equal(rc3, want == RP_ENOENT ? RP_EPARSE : want);
    }
    assert_true(rc1 == 0 || rc1 == RP_EPARSE || rc1 == RP_ENOENT);
    assert_true(rc2 == 0 || rc2 == RP_EPARSE);
    assert_true(rc3 == 0 || rc3 == RP_EPARSE);
    return rc1;
}

static void test_bad_files(void **st)
{
    (void)st;
    char f[1400], p[1024];
    unsigned char junk[5000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)((i * 7919) & 0xff);
    snprintf(f, sizeof f, "%s/garbage.bin", g_tmp);
    write_bytes(f, junk, sizeof junk);
    all_on(f, RP_EPARSE);

    snprintf(f, sizeof f, "%s/empty.dcm", g_tmp);
    write_bytes(f, "", 0);
    all_on(f, RP_EPARSE);

    all_on("/nonexistent/x.dcm", RP_ENOENT);

    /* a real CT cut inside its header (preamble + meta + a few elements) */
    char *ct = NULL;
    size_t len = 0;
    assert_int_equal(rp_read_file(shared(CT1, p, sizeof p), &ct, &len), 0);
    snprintf(f, sizeof f, "%s/truncated.dcm", g_tmp);
    write_bytes(f, ct, 400);
    all_on(f, RP_EPARSE);
    free(ct);

    /* the shared malformed set: some are readable up to Pixel Data, none may crash */
    DIR *d = opendir(shared("malformed", p, sizeof p));
    assert_non_null(d);
    struct dirent *e;
    int files = 0, refused = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(f, sizeof f, "%s/%s", p, e->d_name);
        refused += all_on(f, 1) != 0;
        files++;
    }
    closedir(d);
    assert_true(files >= 16);
    assert_true(refused >= 1); /* at least the truncated big-endian one */
}

static void put16(FILE *f, unsigned v)
{
    fputc((int)(v & 0xff), f);
    fputc((int)(v >> 8), f);
}

static void put32(FILE *f, uint32_t v)
{
    put16(f, v & 0xffff);
    put16(f, v >> 16);
}

/* A raw explicit-VR dataset with (0040,A730) nested `depth` deep, undefined lengths. */
static void write_nested(const char *path, int depth)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    put16(f, 0x0008);
    put16(f, 0x0018);
    fwrite("UI", 1, 2, f);
    put16(f, 6);
    fwrite("1.2.3\0", 1, 6, f);
    for (int i = 0; i < depth; i++) {
        put16(f, 0x0040);
        put16(f, 0xA730);
        fwrite("SQ\0\0", 1, 4, f);
        put32(f, 0xFFFFFFFFu);
        put16(f, 0xFFFE);
        put16(f, 0xE000);
        put32(f, 0xFFFFFFFFu);
    }
    for (int i = 0; i < depth; i++) {
        put16(f, 0xFFFE);
        put16(f, 0xE00D);
        put32(f, 0);
        put16(f, 0xFFFE);
        put16(f, 0xE0DD);
        put32(f, 0);
    }
    fclose(f);
}

/* Sequences nested 10,000 deep overflow dcmtk's recursive reader: every reader refuses them
 * with a reason before dcmtk sees them; 20 levels read normally. */
static void test_deep_nesting(void **st)
{
    (void)st;
    char path[] = "/tmp/rp_deep_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_nested(path, 10000);
    rp_dcm_meta m;
    rp_dcm_ref r;
    char why[256] = "";
    assert_int_equal(rp_dcm_read_meta(path, &m, why, sizeof why), RP_EPARSE);
    assert_non_null(strstr(why, "nested deeper"));
    assert_int_equal(rp_dcm_read_ref(path, &r, why, sizeof why), RP_EPARSE);
    rp_dcm_info *in = NULL;
    assert_int_equal(rp_dcm_read_info(path, &in, why, sizeof why), RP_EUNSUPPORTED);
    assert_null(in);
    assert_non_null(strstr(why, "nested deeper"));
    write_nested(path, 20);
    assert_int_equal(rp_dcm_read_meta(path, &m, why, sizeof why), 0);
    unlink(path);
}

int main(void)
{
    g_data = getenv("RP_SHARED_DATA");
    if (!g_data)
        g_data = "/work/shared/data";
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_dicom_XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_ct),
        cmocka_unit_test(test_meta_raw_dataset),
        cmocka_unit_test(test_ref_file_uid),
        cmocka_unit_test(test_header_bytes),
        cmocka_unit_test(test_long_uid_is_never_cut_valid),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_deep_nesting),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed: %s\n", g_tmp);
    return rc;
}
