/* Launches the peer SGEMM (sgemm.ptx) once through the CUDA driver API at M x N x K on random inputs, and checks
 * its result against a double-precision product on the host (every element of 64 sampled rows). Prints one line
 * "peer sgemm MxNxK max_error E" and exits 1 if E exceeds 1e-4 relative. The simulator's log gives the cycles. */
#include <cuda.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static char *read_file(const char *f) {
  FILE *p = fopen(f, "rb");
  if (!p) { perror(f); exit(2); }
  fseek(p, 0, SEEK_END); long n = ftell(p); rewind(p);
  char *s = malloc(n + 1);
  if (fread(s, 1, n, p) != (size_t)n) { perror(f); exit(2); }
  s[n] = 0; fclose(p); return s;
}
#define CHECK(x) do { CUresult r = (x); if (r != CUDA_SUCCESS) { printf("%s failed: %d\n", #x, r); return 2; } } while (0)

int main(int argc, char **argv) {
  if (argc != 5) { printf("usage: launch sgemm.ptx M N K\n"); return 2; }
  int M = atoi(argv[2]), N = atoi(argv[3]), K = atoi(argv[4]);
  if (M % 128 || N % 128 || K % 8) { printf("M and N must be multiples of 128, K of 8\n"); return 2; }
  float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *c = malloc(sizeof(float) * M * N);
  srand(7);
  for (long i = 0; i < (long)M * K; i++) a[i] = (float)rand() / RAND_MAX - 0.5f;
  for (long i = 0; i < (long)K * N; i++) b[i] = (float)rand() / RAND_MAX - 0.5f;
  CUdevice d; CUcontext x; CUmodule m; CUfunction f; CUdeviceptr da, db, dc;
  CHECK(cuInit(0)); CHECK(cuDeviceGet(&d, 0)); CHECK(cuCtxCreate(&x, 0, d));
  CHECK(cuModuleLoadData(&m, read_file(argv[1])));
  CHECK(cuModuleGetFunction(&f, m, "sgemm_tiled"));
  CHECK(cuMemAlloc(&da, sizeof(float) * M * K)); CHECK(cuMemAlloc(&db, sizeof(float) * K * N)); CHECK(cuMemAlloc(&dc, sizeof(float) * M * N));
  CHECK(cuMemcpyHtoD(da, a, sizeof(float) * M * K)); CHECK(cuMemcpyHtoD(db, b, sizeof(float) * K * N));
  void *args[] = {&M, &N, &K, &da, &db, &dc};
  CHECK(cuLaunchKernel(f, N / 128, M / 128, 1, 256, 1, 1, 0, NULL, args, NULL));
  CHECK(cuCtxSynchronize());
  CHECK(cuMemcpyDtoH(c, dc, sizeof(float) * M * N));
  double worst = 0;
  for (int s = 0; s < 64; s++) {
    int i = (int)((long)s * 7919 % M);
    for (int j = 0; j < N; j++) {
      double sum = 0, size = 0;
      for (int k = 0; k < K; k++) { sum += (double)a[(long)i * K + k] * b[(long)k * N + j]; size += fabs((double)a[(long)i * K + k] * b[(long)k * N + j]); }
      double e = fabs(c[(long)i * N + j] - sum) / (size + 1e-30);
      if (e > worst) worst = e;
    }
  }
  printf("peer sgemm %dx%dx%d max_error %.3g\n", M, N, K, worst);
  return worst <= 1e-4 ? 0 : 1;
}
