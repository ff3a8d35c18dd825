// ReLU, sigmoid and cosine: the scalar functions the fused kernels call, and their references (no kernel of
// their own: every layer fuses its activation). Derivatives are taken from the output, so a
// layer keeps only its activated output, never its pre-activation; the one exception is the cosine of a
// periodic embedding (its slope -sin z is not a function of cos z), whose layer keeps z as well.
using System.Numerics;

namespace HitGpu.Kernels;

public enum Activation { Identity = 0, Relu = 1, Sigmoid = 2, Cos = 3 }

public static class Activations
{
    // ---- reference (any float type) ----

    public static T ApplyReference<T>(Activation activation, T z) where T : IFloatingPointIeee754<T> => activation switch
    {
        Activation.Relu => z > T.Zero ? z : T.Zero,
        Activation.Sigmoid => SigmoidReference(z),
        Activation.Cos => T.Cos(z),
        _ => z,
    };

    /// <summary>Whether the slope comes from the output alone (all but the cosine, which needs its pre-activation).</summary>
    public static bool SlopeFromOutput(Activation activation) => activation != Activation.Cos;

    /// <summary>d output / d input from the output y, or for the cosine from the pre-activation z.</summary>
    public static T DerivativeReference<T>(Activation activation, T y, T z) where T : IFloatingPointIeee754<T> =>
        activation == Activation.Cos ? -T.Sin(z) : DerivativeFromOutputReference(activation, y);

    /// <summary>d output / d input, written in terms of the output y.</summary>
    public static T DerivativeFromOutputReference<T>(Activation activation, T y) where T : IFloatingPointIeee754<T> => activation switch
    {
        Activation.Relu => y > T.Zero ? T.One : T.Zero,
        Activation.Sigmoid => y * (T.One - y),
        _ => T.One,
    };

    /// <summary>Sigmoid that never evaluates exp of a large positive number.</summary>
    public static T SigmoidReference<T>(T z) where T : IFloatingPointIeee754<T>
    {
        if (z >= T.Zero)
            return T.One / (T.One + T.Exp(-z));
        T e = T.Exp(z);
        return e / (T.One + e);
    }

    // ---- device functions (float, callable from kernels) ----

    public static float Apply(int activation, float z)
    {
        if (activation == (int)Activation.Relu)
            return z > 0f ? z : 0f;
        if (activation == (int)Activation.Sigmoid)
            return Sigmoid(z);
        if (activation == (int)Activation.Cos)
            return MathF.Cos(z);
        return z;
    }

    /// <summary>The slope from the output y, or for the cosine from the pre-activation z (<see cref="DerivativeReference"/>).</summary>
    public static float Derivative(int activation, float y, float z) =>
        activation == (int)Activation.Cos ? -MathF.Sin(z) : DerivativeFromOutput(activation, y);

    public static float DerivativeFromOutput(int activation, float y)
    {
        if (activation == (int)Activation.Relu)
            return y > 0f ? 1f : 0f;
        if (activation == (int)Activation.Sigmoid)
            return y * (1f - y);
        return 1f;
    }

    public static float Sigmoid(float z)
    {
        if (z >= 0f)
            return 1f / (1f + MathF.Exp(-z));
        float e = MathF.Exp(z);
        return e / (1f + e);
    }
}
