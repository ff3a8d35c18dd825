// The peer for the tiled product on the simulated GPU: a single-precision C = A B (row-major, M x K times K x N)
// in the manner of the published 2-D register-tiled, vectorised SGEMMs (siboehm's walk-through, its kernel
// with 2-D block tiling and float4 loads): a 128 x 128 tile of C per block of 256 threads, 8 terms of k a step
// through shared memory (A stored transposed so that each thread reads its 8 rows as two float4), each thread
// 8 x 8 outputs in registers. Written for this project; M and N multiples of 128, K of 8 (the shapes we time).
// Compiled by the kit's nvcc to PTX (peer/run.sh) and launched through the simulator's driver layer (launch.c).
#define BM 128
#define BN 128
#define BK 8
#define TM 8
#define TN 8

extern "C" __global__ void __launch_bounds__(256) sgemm_tiled(int M, int N, int K, const float *__restrict__ A,
                                                            const float *__restrict__ B, float *__restrict__ C)
{
    __shared__ float As[BK][BM]; // A's tile, transposed: As[k][m]
    __shared__ float Bs[BK][BN];
    const int tid = threadIdx.x;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    const int tr = tid / (BN / TN), tc = tid % (BN / TN); // this thread's 8 x 8 block of the tile
    // loads: A's tile is 128 x 8 = 256 float4 along k (one a thread); B's is 8 x 128 = 256 float4 along n
    const int aRow = tid / (BK / 4), aCol = (tid % (BK / 4)) * 4;
    const int bRow = tid / (BN / 4), bCol = (tid % (BN / 4)) * 4;
    float acc[TM][TN] = {};
    float a[TM], b[TN];
    for (int k0 = 0; k0 < K; k0 += BK)
    {
        float4 av = *reinterpret_cast<const float4 *>(&A[(row0 + aRow) * K + k0 + aCol]);
        As[aCol + 0][aRow] = av.x;
        As[aCol + 1][aRow] = av.y;
        As[aCol + 2][aRow] = av.z;
        As[aCol + 3][aRow] = av.w;
        *reinterpret_cast<float4 *>(&Bs[bRow][bCol]) = *reinterpret_cast<const float4 *>(&B[(k0 + bRow) * N + col0 + bCol]);
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; k++)
        {
            *reinterpret_cast<float4 *>(&a[0]) = *reinterpret_cast<const float4 *>(&As[k][tr * TM]);
            *reinterpret_cast<float4 *>(&a[4]) = *reinterpret_cast<const float4 *>(&As[k][tr * TM + 4]);
            *reinterpret_cast<float4 *>(&b[0]) = *reinterpret_cast<const float4 *>(&Bs[k][tc * TN]);
            *reinterpret_cast<float4 *>(&b[4]) = *reinterpret_cast<const float4 *>(&Bs[k][tc * TN + 4]);
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++)
                    acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j += 4)
            *reinterpret_cast<float4 *>(&C[(row0 + tr * TM + i) * N + col0 + tc * TN + j]) =
                make_float4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]);
}
