// Dropout on hidden-layer outputs during training: each unit is kept with probability 1 - rate and scaled
// by 1 / (1 - rate), so evaluation (no dropout) sees the same expected activations. The mask is a hash of
// (seed, step, row of the batch, layer, unit): no random state on the device, the same mask on every
// accelerator and path, and the backward pass multiplies the deltas by the very same mask.
using System.Numerics;
using ILGPU;

namespace HitGpu.Kernels;

public struct DropoutArgs
{
    public ArrayView<float> Values; // (rows, cols): a hidden layer's outputs, or the deltas at them
    public int Rows, Cols, Layer, Step;
    public uint Seed;
    public float Rate;
}

public static class Dropout
{
    /// <summary>The mask value times the scale: 1 / (1 - rate) for a kept unit, 0 for a dropped one.</summary>
    public static float Factor(uint seed, int step, int row, int layer, int unit, float rate)
    {
        if (rate <= 0f)
            return 1f;
        // murmur3's finaliser over the mixed coordinates: cheap, and good enough to look uniform.
        uint h = seed ^ ((uint)step * 0x9E3779B1u) ^ ((uint)row * 0x85EBCA77u) ^ ((uint)(layer * 65536 + unit) * 0xC2B2AE3Du);
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        h ^= h >> 16;
        float u = (int)(h >> 8) * (1f / 16777216f); // [0, 1); via int: a uint-to-float conversion goes through double (rejected by OpenCL without fp64)
        return u >= rate ? 1f / (1f - rate) : 0f;
    }

    // ---- reference ----

    /// <summary>The same mask in any float type (the float factor converted), so a double reference drops the same units.</summary>
    public static void ApplyReference<T>(Span<T> values, int rows, int cols, uint seed, int step, int layer, float rate) where T : IFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                values[r * cols + c] *= T.CreateTruncating(Factor(seed, step, r, layer, c, rate));
    }

    // ---- kernel ----

    public static void Kernel(DropoutArgs a, int blocked)
    {
        var range = WorkRange.OfThread(a.Rows * a.Cols, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int r = e / a.Cols, c = e - r * a.Cols;
            a.Values[e] *= Factor(a.Seed, a.Step, r, a.Layer, c, a.Rate);
        }
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, DropoutArgs, int>? dropout;

    /// <summary>Multiplies (rows, cols) values by the dropout mask and scale, in place: forward on outputs, backward on deltas.</summary>
    public void ApplyDropout(in DropoutArgs a)
    {
        Require(a.Rate is >= 0f and < 1f, $"dropout rate must be in [0, 1), got {a.Rate}");
        Require(a.Values.Length >= (long)a.Rows * a.Cols, "dropout: values must hold (rows, cols)");
        var shape = Plan.ShapeFor(a.Rows * a.Cols);
        (dropout ??= LoadKernel<DropoutArgs, int>(Dropout.Kernel))(shape.Config, a, shape.BlockedFlag);
    }
}
