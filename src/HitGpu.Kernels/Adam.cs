// Adam (Kingma & Ba) as one fused update over the flat parameter array, in PyTorch's formulation, with
// optional decoupled weight decay (AdamW, Loshchilov & Hutter):
//   p <- p (1 - lr wd)
//   m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The bias corrections depend only on the step number t, so the host computes them: no device scalar state.
using ILGPU;

namespace HitGpu.Kernels;

/// <summary>Adam's hyper-parameters and the step they are applied at (t counts from 1).</summary>
public struct AdamStep
{
    public float LearningRate, Beta1, Beta2, Epsilon, WeightDecay;
    public float BiasCorrection1, BiasCorrection2; // 1 - beta1^t, 1 - beta2^t

    public static AdamStep At(int t, float learningRate, in StepSettings settings)
    {
        if (t < 1)
            throw new ArgumentOutOfRangeException(nameof(t), "Adam steps count from 1");
        return new AdamStep
        {
            LearningRate = learningRate, Beta1 = settings.Beta1, Beta2 = settings.Beta2, Epsilon = settings.Epsilon, WeightDecay = settings.WeightDecay,
            BiasCorrection1 = (float)(1 - Math.Pow(settings.Beta1, t)),
            BiasCorrection2 = (float)(1 - Math.Pow(settings.Beta2, t)),
        };
    }

    public static AdamStep At(int t, float learningRate) => At(t, learningRate, StepSettings.Default);
}

public static class Adam
{
    // ---- reference ----

    public static void UpdateReference(Span<float> parameters, ReadOnlySpan<float> gradients, Span<float> m, Span<float> v, in AdamStep s)
    {
        for (int i = 0; i < parameters.Length; i++)
            parameters[i] = UpdateOne(ref m[i], ref v[i], parameters[i], gradients[i], s);
    }

    // ---- device function and kernel ----

    /// <summary>Updates one parameter and its two moments; shared by the reference and the kernel, written once.</summary>
    public static float UpdateOne(ref float m, ref float v, float parameter, float gradient, in AdamStep s)
    {
        parameter *= 1f - s.LearningRate * s.WeightDecay;
        m = s.Beta1 * m + (1f - s.Beta1) * gradient;
        v = s.Beta2 * v + (1f - s.Beta2) * gradient * gradient;
        float denominator = MathF.Sqrt(v) / MathF.Sqrt(s.BiasCorrection2) + s.Epsilon;
        return parameter - s.LearningRate / s.BiasCorrection1 * m / denominator;
    }

    public static void Kernel(ArrayView<float> parameters, ArrayView<float> gradients, ArrayView<float> m, ArrayView<float> v,
        int n, AdamStep s, int blocked)
    {
        var range = WorkRange.OfThread(n, blocked);
        for (int i = range.Start; i < range.End; i += range.Step)
        {
            float mi = m[i], vi = v[i];
            parameters[i] = UpdateOne(ref mi, ref vi, parameters[i], gradients[i], s);
            m[i] = mi;
            v[i] = vi;
        }
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, AdamStep, int>? adam;

    public void AdamUpdate(ArrayView<float> parameters, ArrayView<float> gradients, ArrayView<float> m, ArrayView<float> v, in AdamStep s)
    {
        int n = (int)parameters.Length;
        Require(gradients.Length == n && m.Length == n && v.Length == n, "adam: parameters, gradients and both moments must have one length");
        var shape = Plan.ShapeFor(n);
        (adam ??= LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, AdamStep, int>(Adam.Kernel))(
            shape.Config, parameters, gradients, m, v, n, s, shape.BlockedFlag);
    }
}
