// The whole network's training step in plain C#, in any float type, built from the layer references alone:
// forward (dropout on hidden outputs, the same mask the kernels draw), binary cross-entropy from the logit,
// backward (the forward reversed). The finite-difference test differentiates it in double; the CPU epoch's
// reference and the device network are held against it in float.
using System.Numerics;

namespace HitGpu.Kernels;

public static class NetworkReference
{
    /// <summary>
    /// Mean loss over (rows, inputs) <paramref name="x"/> and labels <paramref name="y"/>; when
    /// <paramref name="gradient"/> is not empty, d mean loss / d parameter into it; when the sample spans are not
    /// empty, each row's loss and correctness (1 or 0). Dropout as <paramref name="settings"/> says, at step
    /// <paramref name="step"/>; rows are the batch's rows in order.
    /// </summary>
    public static T Step<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, ReadOnlySpan<T> x, ReadOnlySpan<T> y, int rows,
        Span<T> gradient, in StepSettings settings, int step, Span<T> sampleLoss = default, Span<T> sampleCorrect = default)
        where T : IFloatingPointIeee754<T>
    {
        // outputs[l + 1]: layer l's activated (and masked) outputs; outputs[0]: the input rows.
        var outputs = new T[layout.Layers + 1][];
        outputs[0] = x[..(rows * layout.Inputs(0))].ToArray();
        for (int l = 0; l < layout.Layers; l++)
        {
            outputs[l + 1] = new T[rows * layout.Outputs(l)];
            Dense.ForwardReference<T>(outputs[l], Weight(layout, parameters, l), Bias(layout, parameters, l), outputs[l + 1],
                rows, layout.Inputs(l), layout.Outputs(l), layout.ActivationOf(l));
            if (l < layout.Layers - 1)
                Dropout.ApplyReference<T>(outputs[l + 1], rows, layout.Outputs(l), settings.DropoutSeed, step, l, settings.DropoutRate);
        }

        T loss = T.Zero, n = T.CreateChecked(rows);
        var delta = new T[rows];
        for (int r = 0; r < rows; r++)
        {
            T z = outputs[^1][r], sample = Loss.BinaryCrossEntropyReference(z, y[r]);
            loss += sample;
            delta[r] = Loss.GradientReference(z, y[r]) / n;
            if (!sampleLoss.IsEmpty)
                sampleLoss[r] = sample;
            if (!sampleCorrect.IsEmpty)
                sampleCorrect[r] = Loss.IsCorrectReference(z, y[r]) ? T.One : T.Zero;
        }
        if (gradient.IsEmpty)
            return loss / n;

        for (int l = layout.Layers - 1; l >= 0; l--)
        {
            var inputDelta = l > 0 ? new T[rows * layout.Inputs(l)] : [];
            Dense.BackwardReference<T>(outputs[l], Weight(layout, parameters, l), delta,
                gradient.Slice(layout.WeightOffset(l), layout.Outputs(l) * layout.Inputs(l)), gradient.Slice(layout.BiasOffset(l), layout.Outputs(l)),
                inputDelta, rows, layout.Inputs(l), layout.Outputs(l), layout.InputActivationOf(l));
            if (l > 0)
                Dropout.ApplyReference<T>(inputDelta, rows, layout.Inputs(l), settings.DropoutSeed, step, l - 1, settings.DropoutRate);
            delta = inputDelta;
        }
        return loss / n;
    }

    private static ReadOnlySpan<T> Weight<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, int l) =>
        parameters.Slice(layout.WeightOffset(l), layout.Outputs(l) * layout.Inputs(l));

    private static ReadOnlySpan<T> Bias<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, int l) =>
        parameters.Slice(layout.BiasOffset(l), layout.Outputs(l));
}
