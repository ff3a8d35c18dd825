// Shuffling on the device: each epoch's order is a seeded permutation of the training rows, computed by every
// thread for its own positions with no host work and no upload: position i takes row Permute(i). The
// permutation is a keyed 8-round Feistel network on the smallest even-bit power of two >= n, walked until it
// lands below n (cycle walking), which makes it a bijection on [0, n). The reference is the same function run
// on the host.
using ILGPU;

namespace HitGpu.Kernels;

public static class Shuffle
{
    /// <summary>Where position <paramref name="i"/> of [0, n) goes under the permutation of (seed, epoch): a bijection on [0, n).</summary>
    public static int Permute(int i, int n, uint seed, int epoch)
    {
        int bits = 2;
        while ((1L << bits) < n)
            bits += 2;
        int half = bits / 2;
        uint mask = (1u << half) - 1u;
        uint key = Mix(seed ^ ((uint)epoch * 0x9E3779B9u));
        uint x = (uint)i;
        do
        {
            uint left = x >> half, right = x & mask;
            for (uint round = 0; round < 8; round++)
            {
                uint next = left ^ (Mix(right ^ key ^ (round * 0x85EBCA77u)) & mask);
                left = right;
                right = next;
            }
            x = (left << half) | right;
        }
        while (x >= (uint)n);
        return (int)x;
    }

    /// <summary>murmur3's finaliser: every input bit reaches every output bit.</summary>
    private static uint Mix(uint h)
    {
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        h ^= h >> 16;
        return h;
    }

    // ---- reference ----

    /// <summary>order[i] = source[Permute(i)] for i in [0, n).</summary>
    public static void PermuteReference(ReadOnlySpan<int> source, Span<int> order, uint seed, int epoch)
    {
        for (int i = 0; i < source.Length; i++)
            order[i] = source[Permute(i, source.Length, seed, epoch)];
    }

    // ---- kernel ----

    public static void PermutationKernel(ArrayView<int> source, ArrayView<int> order, int n, uint seed, int epoch, int blocked)
    {
        var range = WorkRange.OfThread(n, blocked);
        for (int i = range.Start; i < range.End; i += range.Step)
            order[i] = source[Permute(i, n, seed, epoch)];
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, ArrayView<int>, ArrayView<int>, int, uint, int, int>? permutation;

    /// <summary>order[i] = source[Shuffle.Permute(i)] for the first n positions.</summary>
    public void Permute(ArrayView<int> source, ArrayView<int> order, int n, uint seed, int epoch)
    {
        Require(n >= 1 && source.Length >= n && order.Length >= n, $"permutation: both views must hold {n} rows");
        var shape = Plan.ShapeFor(n);
        (permutation ??= LoadKernel<ArrayView<int>, ArrayView<int>, int, uint, int, int>(Shuffle.PermutationKernel))(
            shape.Config, source, order, n, seed, epoch, shape.BlockedFlag);
    }
}
