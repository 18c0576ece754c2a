/*
 * LD_PRELOAD shim for llama-diffusion-cli in `npm run bench:peers` (built by bench/peers-build.sh; it changes no
 * computation). llama.cpp's logger is an intentionally leaked singleton whose writer thread prints every message,
 * the answer and the loop time included (common/log.cpp, common_log_main); the process can exit before that
 * thread has run, losing the last messages with exit status 0 — on a busy machine, most of the time. This
 * destructor runs inside exit(): it sleeps in 1 ms steps until every other thread of the process has been asleep
 * for 3 checks in a row (the writer thread is runnable while it has messages to write), at most 2 s, and reports
 * how long it waited on stderr as "peers-logflush: waited N ms".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int others_asleep(void) {
  const long self = syscall(SYS_gettid);
  DIR *d = opendir("/proc/self/task");
  if (!d) return 1;
  int asleep = 1;
  struct dirent *e;
  while (asleep && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    const long tid = atol(e->d_name);
    if (tid == self) continue;
    char path[64];
    char buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* "tid (comm) S ..." */
    if (p && p[1] == ' ' && p[2] == 'R') asleep = 0;
  }
  closedir(d);
  return asleep;
}

__attribute__((destructor)) static void let_the_logger_finish(void) {
  const struct timespec ms = {0, 1000000};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0, quiet = 0; i < 2000 && quiet < 3; i++) {
    nanosleep(&ms, NULL);
    quiet = others_asleep() ? quiet + 1 : 0;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  char line[64];
  const int n = snprintf(line, sizeof line, "\npeers-logflush: waited %ld ms\n",
                         (long) ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
  if (n > 0 && write(2, line, (size_t) n) < 0) { /* nothing to do */ }
}
