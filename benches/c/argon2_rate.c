/* Bare argon2id verify rate of the C reference implementation (libargon2, as Debian's
 * `argon2` and argon2-cffi use it) at the service's parameters, one thread per core:
 * the comparison docs/performance.md reports beside the RustCrypto crate's rate
 * (benches/hash.rs). Built and run by scripts/argon2-compare.sh.
 *   usage: argon2_rate SECONDS [M_KIB T P]  -> prints "<rate> verifies/s" */
#include <argon2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *PASSWORD = "Correct-Horse-Battery-9";
static char encoded[256];
static double seconds;
static long counts[256];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    long *count = arg;
    double end = now() + seconds;
    while (now() < end) {
        if (argon2id_verify(encoded, PASSWORD, strlen(PASSWORD)) != ARGON2_OK) {
            fprintf(stderr, "verify failed\n");
            exit(1);
        }
        (*count)++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    seconds = argc > 1 ? atof(argv[1]) : 10;
    unsigned m = argc > 2 ? (unsigned)atoi(argv[2]) : 19456, t = argc > 3 ? (unsigned)atoi(argv[3]) : 2,
             p = argc > 4 ? (unsigned)atoi(argv[4]) : 1;
    const unsigned char salt[16] = "gatehouse-bench!";
    if (argon2id_hash_encoded(t, m, p, PASSWORD, strlen(PASSWORD), salt, sizeof salt, 32, encoded, sizeof encoded)
        != ARGON2_OK) {
        fprintf(stderr, "hash failed\n");
        return 1;
    }
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1 || threads > 256) threads = 1;
    pthread_t ids[256];
    double started = now();
    for (long i = 0; i < threads; i++) pthread_create(&ids[i], NULL, worker, &counts[i]);
    long total = 0;
    for (long i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        total += counts[i];
    }
    printf("%.1f verifies/s (libargon2 m=%u t=%u p=%u threads=%ld)\n", total / (now() - started), m, t, p, threads);
    return 0;
}
