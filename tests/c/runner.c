/*
 * runner.c - runs the C tests: all of them, or the ones named on the command
 * line.  One line per test ("ok 3 - sleep_basic" / "not ok ..."), then a
 * summary line "N passed, M failed"; the exit code is 0 only if all passed.
 *
 * Each test runs in a forked child (like libuv's runner): a failed assertion
 * or a crash takes down only that child, and runtime threads a broken test
 * left behind die with it.  The child arms alarm(), so a hang fails loudly
 * instead of stalling the suite.  Sanitizers and valgrind follow the fork and
 * check each child on its exit (leaks included), which makes their findings
 * per test.
 *
 * Environment:
 *   TR_TEST_TIMEOUT  seconds per test before SIGALRM (default 60)
 *   TR_TEST_NOFORK   set to 1 to run in-process (for a debugger); the first
 *                    failure then ends the run
 *   TR_TEST_SCALE    multiplier for stress sizes (see task.h)
 */
#include "task.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct test_entry {
    const char *name;
    void (*fn)(void);
} test_entry;

static const test_entry tests[] = {
#define TT_ENTRY_(name) {#name, tt_test_##name},
    TT_TEST_LIST(TT_ENTRY_)
#undef TT_ENTRY_
};

#define NTESTS (sizeof tests / sizeof tests[0])

static const test_entry *find_test(const char *name) {
    for (size_t i = 0; i < NTESTS; i++)
        if (strcmp(tests[i].name, name) == 0) return &tests[i];
    return NULL;
}

static unsigned env_uint(const char *var, unsigned dflt) {
    const char *s = getenv(var);
    if (!s || !*s) return dflt;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    return *end || v == 0 || v > 3600 ? dflt : (unsigned)v;
}

/* Run one test in a child; returns true if it passed. */
static bool run_forked(const test_entry *t, unsigned timeout, char *why, size_t whylen) {
    fflush(stdout); /* or the child would print the parent's buffer again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "fork failed");
        return false;
    }
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm(timeout);
        t->fn();
        fflush(stdout);
        exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(why, whylen, "waitpid failed");
            return false;
        }
    }
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 0) return true;
        snprintf(why, whylen, "exit status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        if (WTERMSIG(status) == SIGALRM) snprintf(why, whylen, "timed out after %us", timeout);
        else snprintf(why, whylen, "killed by signal %d", WTERMSIG(status));
    } else {
        snprintf(why, whylen, "unknown wait status %d", status);
    }
    return false;
}

int main(int argc, char **argv) {
    const test_entry *selected[NTESTS];
    size_t nsel = 0;
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NTESTS; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const test_entry *t = find_test(argv[i]);
        if (!t) {
            fprintf(stderr, "unknown test: %s (try --list)\n", argv[i]);
            return 2;
        }
        if (nsel == NTESTS) {
            fprintf(stderr, "too many test names\n");
            return 2;
        }
        selected[nsel++] = t;
    }
    if (nsel == 0)
        for (size_t i = 0; i < NTESTS; i++) selected[nsel++] = &tests[i];

    unsigned timeout = env_uint("TR_TEST_TIMEOUT", 60);
    const char *nofork = getenv("TR_TEST_NOFORK");
    bool forking = !(nofork && strcmp(nofork, "1") == 0);

    printf("1..%zu\n", nsel);
    if (tt_scale() != 1.0) printf("# stress sizes scaled by %g\n", tt_scale());
    size_t passed = 0, failed = 0;
    for (size_t i = 0; i < nsel; i++) {
        const test_entry *t = selected[i];
        char why[64] = "";
        bool ok;
        double t0 = tt_now();
        if (forking) {
            ok = run_forked(t, timeout, why, sizeof why);
        } else {
            alarm(timeout);
            t->fn(); /* a failure aborts the whole run */
            alarm(0);
            ok = true;
        }
        double took = tt_now() - t0;
        if (ok) {
            passed++;
            printf("ok %zu - %s # %.3fs\n", i + 1, t->name, took);
        } else {
            failed++;
            printf("not ok %zu - %s # %s\n", i + 1, t->name, why);
        }
        fflush(stdout);
    }
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
