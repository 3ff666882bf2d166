/* Unit tests for the supervisor's executor interface with a fake executor of the kind a batch
 * system would be (string ids, a batched poll, jobs that outlive the node): the supervisor
 * submits the worker command, learns every end from one poll of all jobs in flight, records
 * ends as job states and reasons (done / dead for a permanent exit code), takes up at start
 * the jobs an earlier life left running (requeuing those the executor no longer knows), leaves
 * running jobs running at stop, and calls derived_queued when a job ends done with outbox rows
 * waiting. The fake's jobs report as a worker does: a result manifest beside the outputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db.h"
#include "sched/sched.h"

#define MAX_FAKE 32

typedef struct fake_job {
    char id[64];
    long long job_id;
    int polls_left; /* ends when it reaches 0; < 0: never */
    int exit_code;
    int ended;
} fake_job;

typedef struct fake {
    fake_job jobs[MAX_FAKE];
    int n;
    int submits, polls, max_batch, cancels, reattaches;
    int busy_left; /* submits to refuse with RP_EBUSY (a batch controller down) */
    int refused;
    char last_argv[256];
} fake;

static fake F;
static int derived_calls;
static char tmpdir[64], dbpath[128];

/* What a worker leaves when it succeeds: the result manifest its job file names. */
static void report_ok(long long job_id)
{
    char jf[256], *text = NULL;
    size_t len = 0;
    assert_int_equal(rp_jobfile_path(tmpdir, job_id, jf, sizeof jf), 0);
    assert_int_equal(rp_read_file(jf, &text, &len), 0);
    char man[512] = "";
    int attempt = -1;
    const char *m = strstr(text, "\"manifest\":"), *a = strstr(text, "\"attempt\":");
    assert_non_null(m);
    assert_non_null(a);
    assert_int_equal(sscanf(m, "\"manifest\":%*[ \t]\"%511[^\"]\"", man), 1);
    assert_int_equal(sscanf(a, "\"attempt\":%d", &attempt), 1);
    free(text);
    char dir[512];
    rp_strlcpy(dir, man, sizeof dir);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(rp_mkdir_p(dir, 0750), 0);
    FILE *f = fopen(man, "w");
    assert_non_null(f);
    fprintf(f, "{\"format\":\"radprep-result/1\",\"job\":%lld,\"attempt\":%d,"
               "\"status\":\"ok\",\"output_dir\":\"\",\"files\":[]}",
            job_id, attempt);
    fclose(f);
}

/* A series the index has, so that the node can write a job file for it. */
static void index_series(rp_db *db, const char *uid)
{
    rp_instance_meta m;
    memset(&m, 0, sizeof m);
    rp_strlcpy(m.study_uid, "1.2.3", sizeof m.study_uid);
    rp_strlcpy(m.series_uid, uid, sizeof m.series_uid);
    snprintf(m.sop_instance_uid, sizeof m.sop_instance_uid, "%s.1", uid);
    rp_strlcpy(m.modality, "OT", sizeof m.modality);
    snprintf(m.file_path, sizeof m.file_path, "1.2.3/%s/1.dcm", uid);
    m.received_at = rp_now_s() - 1;
    assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
}

/* Behaviour by job id: 2 exits 3 (bad input), 4 never ends, the others exit 0. */
static void behave(fake_job *j)
{
    j->polls_left = j->job_id == 4 ? -1 : 2;
    j->exit_code = j->job_id == 2 ? 3 : 0;
}

static int fake_submit(void *self, const rp_exec_request *rq, char *id, size_t idsz, int *pid)
{
    fake *f = self;
    if (f->busy_left > 0) {
        f->busy_left--;
        f->refused++;
        return RP_EBUSY;
    }
    assert_true(f->n < MAX_FAKE);
    fake_job *j = &f->jobs[f->n++];
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "batch-%d", 1000 + f->n);
    j->job_id = rq->job_id;
    behave(j);
    f->submits++;
    snprintf(f->last_argv, sizeof f->last_argv, "%s %s %s", rq->argv[1], rq->argv[2],
             rq->argv[3]);
    assert_non_null(rq->log_path);
    assert_true(rq->memory_mb == 512 && rq->timeout_s == 60);
    rp_strlcpy(id, j->id, idsz);
    *pid = 0; /* not a process of this machine */
    return 0;
}

static fake_job *find(fake *f, const char *id)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->jobs[i].id, id) == 0)
            return &f->jobs[i];
    return NULL;
}

static int fake_poll(void *self, rp_exec_job *jobs, size_t n, double now_mono)
{
    (void)now_mono;
    fake *f = self;
    f->polls++;
    if ((int)n > f->max_batch)
        f->max_batch = (int)n;
    for (size_t i = 0; i < n; i++) {
        fake_job *j = find(f, jobs[i].id);
        if (!j) {
            jobs[i].ended = 1;
            jobs[i].result.end = RP_PROC_LOST;
            jobs[i].result.exit_code = -1;
            snprintf(jobs[i].result.reason, sizeof jobs[i].result.reason, "lost");
            continue;
        }
        if (j->polls_left > 0 && --j->polls_left == 0) {
            j->ended = 1;
            jobs[i].ended = 1;
            jobs[i].result.end = RP_PROC_EXITED;
            jobs[i].result.exit_code = j->exit_code;
            if (j->exit_code == 0)
                report_ok(j->job_id);
            jobs[i].result.signo = 0;
            jobs[i].result.wall_s = 0.1;
            snprintf(jobs[i].result.reason, sizeof jobs[i].result.reason, "exit code %d",
                     j->exit_code);
        }
    }
    return 0;
}

static int fake_cancel(void *self, const char *id, double now_mono)
{
    (void)id;
    (void)now_mono;
    ((fake *)self)->cancels++;
    return 0;
}

static int fake_reattach(void *self, const char *id, long long job_id)
{
    fake *f = self;
    f->reattaches++;
    if (strcmp(id, "batch-old") != 0)
        return RP_ENOENT; /* the batch system forgot it */
    fake_job *j = &f->jobs[f->n++];
    memset(j, 0, sizeof *j);
    rp_strlcpy(j->id, id, sizeof j->id);
    j->job_id = job_id;
    j->polls_left = 2;
    return 0;
}

static void fake_free(void *self)
{
    (void)self;
}

static const rp_executor_ops fake_ops = {"fake",        fake_submit,   fake_poll,
                                         fake_cancel,   fake_reattach, fake_free};

static void on_derived(void *arg)
{
    (void)arg;
    derived_calls++;
}

static rp_db_job wait_state(rp_db *db, long long id, rp_job_state state)
{
    rp_db_job j;
    double t0 = rp_mono_s();
    for (;;) {
        assert_int_equal(rp_db_job_get(db, id, &j), 0);
        if (j.state == state)
            return j;
        if (rp_mono_s() - t0 > 10)
            fail_msg("job %lld is %s, wanted %s", id, rp_job_state_name(j.state),
                     rp_job_state_name(state));
        usleep(10000);
    }
}

static void test_fake_executor(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_exec_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof dbpath, "%s/index.sqlite", tmpdir);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    /* jobs 1 and 2 left running by an earlier life: 1 the batch system still has, 2 it
     * forgot; 3 and 4 queued */
    long long id = 0;
    for (int i = 1; i <= 4; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "1.2.3.%d", i);
        index_series(db, uid);
        assert_int_equal(rp_db_job_enqueue(db, uid, 1, 3, &id), 0);
        assert_int_equal(id, i);
    }
    rp_db_job j;
    rp_conf c;
    rp_job_resources res;
    char why[300];
    assert_int_equal(rp_conf_defaults(&c), 0);
    rp_strlcpy(c.data_dir, tmpdir, sizeof c.data_dir);
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 0, &j), 0);
    assert_int_equal(rp_jobfile_write(db, &c, tmpdir, &j, &res, why, sizeof why), 0);
    rp_conf_free(&c);
    assert_int_equal(rp_db_job_set_exec(db, j.id, "batch-old", 0), 0);
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 0, &j), 0);
    assert_int_equal(rp_db_job_set_exec(db, j.id, "batch-forgotten", 0), 0);
    /* a derived instance waits to be sent */
    assert_int_equal(rp_db_outbox_add(db, "1.2.9", "/d/a.dcm", "pacs", NULL), 0);

    memset(&F, 0, sizeof F);
    derived_calls = 0;
    rp_executor ex = {&fake_ops, &F};
    char logdir[160];
    snprintf(logdir, sizeof logdir, "%s/logs", tmpdir);
    rp_supervisor_opts o = {.db_path = dbpath,
                            .worker_bin = "/bin/true",
                            .data_dir = tmpdir,
                            .log_dir = logdir,
                            .workers = 3,
                            .timeout_s = 60,
                            .memory_mb = 512,
                            .max_attempts = 3,
                            .poll_s = 0.05,
                            .executor = &ex,
                            .derived_queued = on_derived};
    rp_supervisor *s = NULL;
    assert_int_equal(rp_supervisor_start(&o, &s), 0);
    assert_int_equal(F.reattaches, 2);

    j = wait_state(db, 1, RP_JOB_DONE); /* reattached, its end came from poll */
    assert_int_equal(j.attempts, 1);
    /* forgotten by the executor: requeued without counting, then run again */
    j = wait_state(db, 2, RP_JOB_DEAD);
    assert_int_equal(j.attempts, 1);
    assert_int_equal(j.exit_status, 3); /* bad input: not retried */
    assert_string_equal(j.reason, "exit code 3");
    j = wait_state(db, 3, RP_JOB_DONE);
    j = wait_state(db, 4, RP_JOB_RUNNING);
    const char *exec_id = NULL;
    for (int i = 0; i < F.n; i++)
        if (F.jobs[i].job_id == 4)
            exec_id = F.jobs[i].id;
    assert_non_null(exec_id);
    assert_string_equal(j.exec_id, exec_id); /* the executor's id, as a string */
    assert_int_equal(j.pid, 0);
    assert_true(F.max_batch >= 2); /* one poll saw several jobs in flight */
    assert_true(derived_calls >= 1);
    assert_non_null(strstr(F.last_argv, "process --job"));

    /* stop: a job of an executor whose jobs outlive the node stays running, untouched */
    rp_supervisor_stop(s);
    assert_int_equal(F.cancels, 0);
    assert_int_equal(rp_db_job_get(db, 4, &j), 0);
    assert_int_equal(j.state, RP_JOB_RUNNING);
    rp_db_close(db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* An executor that cannot take jobs now (RP_EBUSY): the job waits in the queue, the
 * attempt not counted, and is submitted when the executor is asked again. */
static void test_executor_busy(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_exec_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof dbpath, "%s/index.sqlite", tmpdir);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    long long id = 0;
    index_series(db, "1.2.3.1");
    assert_int_equal(rp_db_job_enqueue(db, "1.2.3.1", 1, 1, &id), 0);
    memset(&F, 0, sizeof F);
    F.busy_left = 1;
    rp_executor ex = {&fake_ops, &F};
    char logdir[160];
    snprintf(logdir, sizeof logdir, "%s/logs", tmpdir);
    rp_supervisor_opts o = {.db_path = dbpath, .worker_bin = "/bin/true", .data_dir = tmpdir,
                            .log_dir = logdir, .workers = 2, .timeout_s = 60,
                            .memory_mb = 512, .max_attempts = 1, .poll_s = 0.05,
                            .executor = &ex};
    rp_supervisor *s = NULL;
    assert_int_equal(rp_supervisor_start(&o, &s), 0);
    double t0 = rp_mono_s();
    while (F.refused == 0 && rp_mono_s() - t0 < 5)
        usleep(10000);
    assert_int_equal(F.refused, 1);
    usleep(200000);
    rp_db_job j;
    assert_int_equal(rp_db_job_get(db, id, &j), 0);
    assert_int_equal(j.state, RP_JOB_QUEUED); /* waiting, not failed */
    assert_int_equal(j.attempts, 0);
    assert_int_equal(F.submits, 0); /* and not asked again at once */
    j = wait_state(db, id, RP_JOB_DONE); /* asked again a few seconds later */
    assert_int_equal(j.attempts, 1);     /* max_attempts 1, yet it ran: the wait did not count */
    assert_int_equal(F.submits, 1);
    rp_supervisor_stop(s);
    rp_db_close(db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fake_executor),
                                       cmocka_unit_test(test_executor_busy)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
