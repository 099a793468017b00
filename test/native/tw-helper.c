/*
 * Test helper for the netlink tests: makes exits the tests can recognise.
 *   tw-helper exit NAME CODE        set comm to NAME, exit with CODE
 *   tw-helper threads NAME N        N extra threads do a little work and block;
 *                                   prints "ready TID..." then waits for EOF on
 *                                   stdin, releases the threads, joins, exits 0
 *   tw-helper storm N WAVE          create and join N threads, WAVE at a time,
 *                                   as fast as possible; prints every thread id
 *   tw-helper pace N RATE           create and join N threads one at a time, RATE
 *                                   a second (absolute deadlines: no drift);
 *                                   prints every thread id
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int released = 0, started = 0;

static void *blocker(void *arg) {
  volatile unsigned long x = 0;
  for (unsigned long i = 0; i < 2000000; i++) x += i; /* a little CPU time */
  pthread_mutex_lock(&mu);
  ((pid_t *)arg)[0] = (pid_t)syscall(SYS_gettid);
  started++;
  pthread_cond_broadcast(&cv);
  while (!released) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void *quick(void *arg) {
  *(pid_t *)arg = (pid_t)syscall(SYS_gettid);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "exit") == 0) {
    prctl(PR_SET_NAME, argv[2], 0, 0, 0);
    return atoi(argv[3]);
  }
  if (argc == 4 && strcmp(argv[1], "threads") == 0) {
    int n = atoi(argv[3]);
    prctl(PR_SET_NAME, argv[2], 0, 0, 0);
    pthread_t *t = calloc(n, sizeof *t);
    pid_t *tids = calloc(n, sizeof *tids);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, blocker, &tids[i]);
    pthread_mutex_lock(&mu);
    while (started < n) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    printf("ready");
    for (int i = 0; i < n; i++) printf(" %d", tids[i]);
    printf("\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "storm") == 0) {
    int n = atoi(argv[2]), wave = atoi(argv[3]);
    pthread_t *t = calloc(wave, sizeof *t);
    pid_t *tids = calloc(n, sizeof *tids);
    for (int done = 0; done < n; done += wave) {
      int k = n - done < wave ? n - done : wave;
      for (int i = 0; i < k; i++)
        if (pthread_create(&t[i], NULL, quick, &tids[done + i]) != 0) { perror("pthread_create"); return 2; }
      for (int i = 0; i < k; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < n; i++) printf("%d\n", tids[i]);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "pace") == 0) {
    int n = atoi(argv[2]);
    double rate = atof(argv[3]);
    if (n < 1 || rate <= 0) { fprintf(stderr, "pace: N and RATE must be positive\n"); return 64; }
    pid_t *tids = calloc(n, sizeof *tids);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long step = (long)(1e9 / rate);
    for (int i = 0; i < n; i++) {
      pthread_t t;
      if (pthread_create(&t, NULL, quick, &tids[i]) != 0) { perror("pthread_create"); return 2; }
      pthread_join(t, NULL);
      next.tv_nsec += step;
      while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    for (int i = 0; i < n; i++) printf("%d\n", tids[i]);
    return 0;
  }
  fprintf(stderr, "usage: tw-helper exit NAME CODE | threads NAME N | storm N WAVE | pace N RATE\n");
  return 64;
}
