/* One core's sequential read bandwidth from memory: a 256 MiB array (far past any L3) summed
 * with AVX2 loads, five times (BENCHMARKS.md, "What limits it": the Winograd filters `U` of
 * the 14×14 and 7×7 layers and the 1×1 filters stream from memory at batch 1).
 *
 * usage: gcc -O2 -mavx2 scripts/read_bw.c -o /tmp/read_bw && /tmp/read_bw
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    size_t n = (size_t)64 << 20; /* floats */
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023) * 1e-3f;
    for (int r = 0; r < 5; r++) {
        double t = now();
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t i = 0; i < n; i += 32) {
            s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
            s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
            s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
            s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
        }
        t = now() - t;
        float o[8];
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        /* The sum is printed so that the loads are not optimized away. */
        printf("read %.1f GB/s (sum %g)\n", n * sizeof(float) / t / 1e9, o[0]);
    }
    free(a);
    return 0;
}
