// The FMA peaks of one core: 24 independent `vdpbf16ps` (bf16 pairs into float32, 32
// multiply-adds each) against 24 independent `vfmadd231ps` (16 each), 512-bit, registers
// only. The "235 against 117 GFLOP/s" of BENCHMARKS.md and plan/direct/bf16.rs (AMD EPYC,
// Zen 4, 2026-12-05). Needs AVX-512 BF16.
//   gcc -O2 -mavx512f -mavx512bf16 -mavx512bw scripts/bf16_peak.c -o /tmp/bf16_peak && /tmp/bf16_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  __m512 acc[24]; for(int i=0;i<24;i++) acc[i]=_mm512_setzero_ps();
  __m512bh a=(__m512bh)_mm512_set1_epi32(0x3f803f80), b=(__m512bh)_mm512_set1_epi32(0x3f803f80);
  long n=100000000; double t=now();
  for(long k=0;k<n;k++){
    #pragma GCC unroll 24
    for(int i=0;i<24;i++){ acc[i]=_mm512_dpbf16_ps(acc[i],a,b);}
    __asm__ volatile("" : "+v"(a));
  }
  t=now()-t; float s=0; for(int i=0;i<24;i++) s+=_mm512_reduce_add_ps(acc[i]);
  printf("bf16 dp: %.1f GFLOP/s (%.0f)\n", n*24.0*16*2*2/t/1e9, s);
  __m512 f=_mm512_set1_ps(1.0f), g=_mm512_set1_ps(1.0f);
  for(int i=0;i<24;i++) acc[i]=_mm512_setzero_ps();
  t=now();
  for(long k=0;k<n;k++){
    #pragma GCC unroll 24
    for(int i=0;i<24;i++){ acc[i]=_mm512_fmadd_ps(f,g,acc[i]);}
    __asm__ volatile("" : "+v"(f));
  }
  t=now()-t; s=0; for(int i=0;i<24;i++) s+=_mm512_reduce_add_ps(acc[i]);
  printf("fp32 fma: %.1f GFLOP/s (%.0f)\n", n*24.0*16*2/t/1e9, s);
}
