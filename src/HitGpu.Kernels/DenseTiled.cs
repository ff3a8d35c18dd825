// The tiled variant of the dense kernels, for GPUs and large layers: every dense product (the forward pass
// X W^T, the weight gradient dZ^T X, the bias gradient dZ^T 1, the input gradient dZ W) is one shared-memory
// tiled product C = epilogue(A B). A group of (gy, gx) threads computes a (4 gy, 4 gx) tile of C, each thread
// a 4 x 4 block held in 16 scalar registers (ILGPU 1.5.3 does not unroll loops, and an array would live in
// local memory); A and B come through shared memory a slice of Depth at a time. A long sum over k (a weight
// gradient over a large batch) is cut into ranges, one per layer of the grid, whose partial sums a second
// launch adds in range order (split-K). Every sum runs in a fixed order: no atomics, the same bits each run. Rows read through RowSource, so the first layer
// gathers its shuffled rows with no copy. Same tests, same references as Dense (Dense.cs).
using ILGPU;
using ILGPU.Runtime;

namespace HitGpu.Kernels;

/// <summary>
/// C (M, N) = epilogue(sum_k A(m, k) B(k, n)). A(m, k) is A's row m, column k, or with ATransposed its row k,
/// column m; likewise B. The epilogue adds Bias[n] (HasBias), applies Activation, and multiplies by the
/// derivative of DerivativeActivation at Derivative(m, n) (HasDerivative: an input gradient).
/// </summary>
public struct ProductArgs
{
    public RowSource A, B, Derivative;
    public int ATransposed, BTransposed;
    public ArrayView<float> C;          // (M, N) row-major
    public ArrayView<float> Bias;       // (N), read when HasBias
    public int M, N, K;
    public int HasBias, Activation, HasDerivative, DerivativeActivation;
    public int Splits;                  // split-K: the sum over k cut into this many ranges, one per grid layer (1: none)
    public ArrayView<float> Partials;   // (Splits, M, N) the ranges' sums, when Splits > 1
}

public static class DenseTiled
{
    /// <summary>The k-slice of A and B that each step brings into shared memory.</summary>
    public const int Depth = 8;

    /// <summary>Outputs per thread along each of M and N.</summary>
    public const int Block = 4;

    private static float ReadA(in ProductArgs a, int m, int k) =>
        a.ATransposed != 0 ? a.A.Data[a.A.RowStart(k) + m] : a.A.Data[a.A.RowStart(m) + k];

    private static float ReadB(in ProductArgs a, int k, int n) =>
        a.BTransposed != 0 ? a.B.Data[a.B.RowStart(n) + k] : a.B.Data[a.B.RowStart(k) + n];

    /// <summary>One group per (4 gy, 4 gx) tile of C; dynamic shared memory of Depth (4 gy + 4 gx) floats.</summary>
    public static void ProductKernel(ProductArgs a)
    {
        var shared = SharedMemory.GetDynamic<float>();
        int gx = Group.DimX, gy = Group.DimY, tx = Group.IdxX, ty = Group.IdxY;
        int tileM = gy * Block, tileN = gx * Block, threads = gx * gy, t = ty * gx + tx;
        int m0 = Grid.IdxY * tileM, n0 = Grid.IdxX * tileN;
        int bOffset = Depth * tileM;
        // Split-K: this group's layer of the grid sums k in [kStart, kEnd), whole Depth slices at a time.
        int chunk = (a.K + a.Splits - 1) / a.Splits;
        chunk = (chunk + Depth - 1) / Depth * Depth;
        int kStart = Grid.IdxZ * chunk, kEnd = Math.Min(a.K, kStart + chunk);
        int mm = ty * Block, nn = tx * Block;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f, c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f, c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int k0 = kStart; k0 < kEnd; k0 += Depth)
        {
            // The group loads A's (Depth, tileM) and B's (Depth, tileN) slices, zeros outside the matrices.
            for (int e = t; e < Depth * tileM; e += threads)
            {
                int kk = e / tileM, m = m0 + e - kk * tileM, k = k0 + kk;
                shared[e] = m < a.M && k < kEnd ? ReadA(a, m, k) : 0f;
            }
            for (int e = t; e < Depth * tileN; e += threads)
            {
                int kk = e / tileN, n = n0 + e - kk * tileN, k = k0 + kk;
                shared[bOffset + e] = n < a.N && k < kEnd ? ReadB(a, k, n) : 0f;
            }
            Group.Barrier();
            for (int kk = 0; kk < Depth; kk++)
            {
                int ar = kk * tileM + mm, br = bOffset + kk * tileN + nn;
                float a0 = shared[ar], a1 = shared[ar + 1], a2 = shared[ar + 2], a3 = shared[ar + 3];
                float b0 = shared[br], b1 = shared[br + 1], b2 = shared[br + 2], b3 = shared[br + 3];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        int r = m0 + mm, c = n0 + nn;
        Store(a, r, c, c00); Store(a, r, c + 1, c01); Store(a, r, c + 2, c02); Store(a, r, c + 3, c03);
        Store(a, r + 1, c, c10); Store(a, r + 1, c + 1, c11); Store(a, r + 1, c + 2, c12); Store(a, r + 1, c + 3, c13);
        Store(a, r + 2, c, c20); Store(a, r + 2, c + 1, c21); Store(a, r + 2, c + 2, c22); Store(a, r + 2, c + 3, c23);
        Store(a, r + 3, c, c30); Store(a, r + 3, c + 1, c31); Store(a, r + 3, c + 2, c32); Store(a, r + 3, c + 3, c33);
    }

    /// <summary>One output's sum: with split-K into this range's partial sums, else through the epilogue into C.</summary>
    private static void Store(in ProductArgs a, int m, int n, float sum)
    {
        if (m >= a.M || n >= a.N)
            return;
        if (a.Splits > 1)
            a.Partials[(Grid.IdxZ * a.M + m) * a.N + n] = sum;
        else
            Finish(a, m, n, sum);
    }

    /// <summary>Split-K's second launch: each output's partial sums added in range order (the same bits each run), then the epilogue.</summary>
    public static void SumPartialsKernel(ProductArgs a, int blocked)
    {
        var range = WorkRange.OfThread(a.M * a.N, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            float sum = 0f;
            for (int s = 0; s < a.Splits; s++)
                sum += a.Partials[s * a.M * a.N + e];
            int m = e / a.N;
            Finish(a, m, e - m * a.N, sum);
        }
    }

    /// <summary>The epilogue of one output: bias, activation, the input gradient's derivative factor.</summary>
    private static void Finish(in ProductArgs a, int m, int n, float sum)
    {
        if (a.HasBias != 0)
            sum += a.Bias[n];
        sum = Activations.Apply(a.Activation, sum);
        if (a.HasDerivative != 0)
            sum *= Activations.DerivativeFromOutput(a.DerivativeActivation, a.Derivative.Data[a.Derivative.RowStart(m) + n]);
        a.C[m * a.N + n] = sum;
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, ProductArgs>? tiledProduct;
    private Action<KernelConfig, ProductArgs, int>? sumPartials;
    private DeviceBuffer<float>? ones, partials;

    /// <summary>A column of ones, at least <paramref name="rows"/> long: the bias gradient is dZ^T times it.</summary>
    private ArrayView<float> Ones(int rows)
    {
        if (ones is null || ones.Length < rows)
        {
            ones?.Dispose();
            ones = Upload<float>(Enumerable.Repeat(1f, Math.Max(rows, 1024)).ToArray(), Math.Max(rows, 1024));
        }
        return ones.View;
    }

    /// <summary>C = epilogue(A B) by the tiled kernel; sizes checked on the host first.</summary>
    public void TiledProduct(in ProductArgs a)
    {
        Require(a.M >= 1 && a.N >= 1 && a.K >= 1, $"tiled product: sizes must be positive, got ({a.M}, {a.N}, {a.K})");
        Require(a.C.Length >= (long)a.M * a.N, "tiled product: C must hold (M, N)");
        a.A.Check(a.ATransposed != 0 ? a.K : a.M, "tiled product A");
        a.B.Check(a.BTransposed != 0 ? a.N : a.K, "tiled product B");
        Require(a.HasBias == 0 || a.Bias.Length >= a.N, "tiled product: the bias must hold N values");
        if (a.HasDerivative != 0)
            a.Derivative.Check(a.M, "tiled product derivative");
        var (gx, gy) = Plan.TiledGroup;
        int tileM = gy * DenseTiled.Block, tileN = gx * DenseTiled.Block;
        var launch = a;
        launch.Splits = DevicePlan.SplitsFor(a.M * a.N, a.K);
        if (launch.Splits > 1)
        {
            long room = (long)launch.Splits * a.M * a.N;
            if (partials is null || partials.Length < room)
            {
                partials?.Dispose();
                partials = Allocate<float>((int)room);
            }
            launch.Partials = partials.View;
        }
        else
        {
            launch.Partials = a.C; // not read
        }
        var config = new KernelConfig(new Index3D((a.N + tileN - 1) / tileN, (a.M + tileM - 1) / tileM, launch.Splits), new Index3D(gx, gy, 1),
            SharedMemoryConfig.RequestDynamic<float>(DenseTiled.Depth * (tileM + tileN)));
        (tiledProduct ??= Accelerator.LoadStreamKernel<ProductArgs>(DenseTiled.ProductKernel))(config, launch);
        if (launch.Splits > 1)
        {
            var shape = Plan.ShapeFor(a.M * a.N);
            (sumPartials ??= Accelerator.LoadStreamKernel<ProductArgs, int>(DenseTiled.SumPartialsKernel))(shape.Config, launch, shape.BlockedFlag);
        }
    }
}
