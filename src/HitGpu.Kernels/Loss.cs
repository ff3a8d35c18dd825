// Binary cross-entropy computed from logits, with the sigmoid fused in:
//   L(z, y) = max(z, 0) - z y + log(1 + exp(-|z|))      (never log(0), never exp of a large number)
//   dL/dz   = sigmoid(z) - y                              (so the backward pass starts at (p - y) / batch)
// One kernel writes the gradient for the batch and each sample's loss and correctness for the epoch's metrics.
using System.Numerics;
using ILGPU;
using ILGPU.Runtime;

namespace HitGpu.Kernels;

public struct LossArgs
{
    public ArrayView<float> Logits;         // (rows): the network's last layer, no activation
    public RowSource Labels;               // 0 or 1 per sample, Cols = 1, read in the same order as the batch
    public ArrayView<float> LogitGradient;  // (rows): dL/dz of the mean batch loss
    public ArrayView<float> SampleLoss;     // written at Labels.Offset + r: one loss per sample of the epoch
    public ArrayView<float> SampleCorrect;  // written likewise: 1 where (z > 0) == (y == 1), else 0
    public int Rows;
    public float GradientScale;             // 1 / rows for a mean over the batch
}

public static class Loss
{
    // ---- reference ----

    public static T BinaryCrossEntropyReference<T>(T logit, T label) where T : IFloatingPointIeee754<T> =>
        T.Max(logit, T.Zero) - logit * label + T.Log(T.One + T.Exp(-T.Abs(logit)));

    public static T GradientReference<T>(T logit, T label) where T : IFloatingPointIeee754<T> =>
        Activations.SigmoidReference(logit) - label;

    /// <summary>A prediction is a hit when p > 0.5, i.e. when the logit is positive.</summary>
    public static bool IsCorrectReference<T>(T logit, T label) where T : IFloatingPointIeee754<T> =>
        logit > T.Zero == label > T.CreateChecked(0.5);

    // ---- device function and kernel ----

    public static float BinaryCrossEntropy(float logit, float label) =>
        MathF.Max(logit, 0f) - logit * label + MathF.Log(1f + MathF.Exp(-MathF.Abs(logit)));

    /// <summary>dL/dz of one sample: the backward pass starts here.</summary>
    public static float LogitGradient(float logit, float label) => Activations.Sigmoid(logit) - label;

    /// <summary>1 when the prediction (logit above 0) matches the label, else 0: the per-sample accuracy slot.</summary>
    public static float Correct(float logit, float label) => (logit > 0f) == (label > 0.5f) ? 1f : 0f;

    public static void Kernel(LossArgs a, int blocked)
    {
        var range = WorkRange.OfThread(a.Rows, blocked);
        for (int r = range.Start; r < range.End; r += range.Step)
        {
            float z = a.Logits[r];
            float y = a.Labels.Data[a.Labels.RowStart(r)];
            a.LogitGradient[r] = LogitGradient(z, y) * a.GradientScale;
            a.SampleLoss[a.Labels.Offset + r] = BinaryCrossEntropy(z, y);
            a.SampleCorrect[a.Labels.Offset + r] = Correct(z, y);
        }
    }
}

/// <summary>
/// The epoch's metrics summed on the device, so a GPU reads back two numbers instead of two per sample: one
/// group; each thread sums its contiguous slice in order (compensated, in float: GPUs and OpenCL without fp64
/// have no fast double), then the first thread sums the threads' partial sums in thread order. The same bits
/// each run.
/// </summary>
public static class SampleSums
{
    public static void Kernel(ArrayView<float> sampleLoss, ArrayView<float> sampleCorrect, int n, ArrayView<float> sums)
    {
        var partial = SharedMemory.GetDynamic<float>(); // (2, threads)
        int thread = Group.IdxX, threads = Group.DimX;
        int perThread = (n + threads - 1) / threads, start = Math.Min(n, thread * perThread), end = Math.Min(n, start + perThread);
        partial[thread] = Compensated(sampleLoss, start, end);
        partial[threads + thread] = Compensated(sampleCorrect, start, end);
        Group.Barrier();
        if (thread == 0)
        {
            float lossSum = 0f, correctSum = 0f, lossCarry = 0f, correctCarry = 0f;
            for (int t = 0; t < threads; t++)
            {
                Add(ref lossSum, ref lossCarry, partial[t]);
                Add(ref correctSum, ref correctCarry, partial[threads + t]);
            }
            sums[0] = lossSum;
            sums[1] = correctSum;
        }
    }

    private static float Compensated(ArrayView<float> values, int start, int end)
    {
        float sum = 0f, carry = 0f;
        for (int i = start; i < end; i++)
            Add(ref sum, ref carry, values[i]);
        return sum;
    }

    /// <summary>Kahan's compensated addition: the low bits lost in sum + value are carried into the next one.</summary>
    private static void Add(ref float sum, ref float carry, float value)
    {
        float y = value - carry, t = sum + y;
        carry = (t - sum) - y;
        sum = t;
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, ArrayView<float>>? sampleSums;

    /// <summary>sums[0] = the sum of the first n sample losses, sums[1] of their correctness flags, in one launch of one group.</summary>
    public void SumSamples(ArrayView<float> sampleLoss, ArrayView<float> sampleCorrect, int n, ArrayView<float> sums)
    {
        Require(n >= 1 && sampleLoss.Length >= n && sampleCorrect.Length >= n && sums.Length >= 2, $"sample sums: the views must hold {n} samples and 2 sums");
        int threads = Kind == AcceleratorKind.Cpu ? Accelerator.MaxNumThreadsPerGroup : Math.Min(256, Accelerator.MaxNumThreadsPerGroup);
        (sampleSums ??= Accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, ArrayView<float>>(SampleSums.Kernel))(
            new KernelConfig(1, threads, SharedMemoryConfig.RequestDynamic<float>(2 * threads)), sampleLoss, sampleCorrect, n, sums);
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, LossArgs, int>? loss;

    public void BinaryCrossEntropy(in LossArgs a)
    {
        Require(a.Labels.Cols == 1, "loss: labels are one column");
        a.Labels.Check(a.Rows, "loss labels");
        Require(a.Logits.Length >= a.Rows && a.LogitGradient.Length >= a.Rows, "loss: logits and their gradient must hold the batch");
        Require(a.SampleLoss.Length >= a.Labels.Offset + a.Rows && a.SampleCorrect.Length >= a.Labels.Offset + a.Rows,
            "loss: per-sample outputs must hold offset + rows");
        var shape = ShapeFor(a.Rows);
        (loss ??= Accelerator.LoadStreamKernel<LossArgs, int>(Loss.Kernel))(shape.Config, a, shape.BlockedFlag);
    }
}
