// The whole network's training step in plain C#, in any float type, built from the layer references alone:
// forward (k members per row, dropout on the hidden MLP layers' outputs, the same masks the kernels draw), binary
// cross-entropy from each member's logit against the (optionally smoothed) target, the loss the members' mean,
// backward (the forward reversed).
// The finite-difference test differentiates it in double; the CPU epoch and the device network are held
// against it in float.
using System.Numerics;

namespace HitGpu.Kernels;

public static class NetworkReference
{
    /// <summary>
    /// Mean loss over (rows, inputs) <paramref name="x"/>, labels <paramref name="y"/> and the layout's k
    /// members; when <paramref name="gradient"/> is not empty, d mean loss / d parameter into it; when the
    /// sample spans are not empty, each row's loss (the members' mean) and correctness (of their mean
    /// probability). Dropout as <paramref name="settings"/> says, at step <paramref name="step"/>, row-member
    /// b k + i taking mask row b k + i; rows are the batch's rows in order.
    /// </summary>
    public static T Step<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, ReadOnlySpan<T> x, ReadOnlySpan<T> y, int rows,
        Span<T> gradient, in StepSettings settings, int step, Span<T> sampleLoss = default, Span<T> sampleCorrect = default)
        where T : IFloatingPointIeee754<T>
    {
        int k = layout.Members, rowMembers = rows * k;
        var (outputs, preScale, preActivation) = Forward(layout, parameters, x, rows, settings, step);

        T loss = T.Zero, n = T.CreateChecked(rowMembers);
        var delta = new T[rowMembers];
        for (int r = 0; r < rows; r++)
        {
            var logits = outputs[^1].AsSpan(r * k, k);
            T target = T.CreateTruncating(Loss.SmoothedTarget(float.CreateTruncating(y[r]), settings.LabelSmoothing));
            for (int i = 0; i < k; i++)
            {
                loss += Loss.BinaryCrossEntropyReference(logits[i], target);
                delta[r * k + i] = Loss.GradientReference(logits[i], target) / n;
            }
            var (sample, _) = Loss.EnsembleSampleReference<T>(logits, target, lossOfMean: false);
            var (_, correct) = Loss.EnsembleSampleReference<T>(logits, y[r], lossOfMean: false);
            if (!sampleLoss.IsEmpty)
                sampleLoss[r] = sample;
            if (!sampleCorrect.IsEmpty)
                sampleCorrect[r] = correct ? T.One : T.Zero;
        }
        if (gradient.IsEmpty)
            return loss / n;

        for (int l = layout.Layers - 1; l >= 0; l--)
        {
            var inputDelta = l > 0 ? new T[rowMembers * layout.Inputs(l)] : [];
            BatchedDense.BackwardReference<T>(layout[l], k, l == 0, outputs[l], parameters, preScale[l], delta, gradient, inputDelta, rows,
                layout.InputActivationOf(l), l > 0 ? preActivation[l - 1] : default);
            if (l > 0 && layout[l - 1].DropsOutputs != 0)
                Dropout.ApplyReference<T>(inputDelta, rowMembers, layout.Inputs(l), settings.DropoutSeed, step, l - 1, settings.DropoutRate);
            delta = inputDelta;
        }
        return loss / n;
    }

    /// <summary>
    /// The forward pass, the one loop over the layers: outputs[l + 1] is layer l's activated (and, as the
    /// settings say, dropped-out) outputs, (rows k, out), outputs[0] the input rows; preScale[l] and
    /// preActivation[l] where layer l has s or keeps z.
    /// </summary>
    private static (T[][] Outputs, T[][] PreScale, T[][] PreActivation) Forward<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, ReadOnlySpan<T> x,
        int rows, in StepSettings settings, int step) where T : IFloatingPointIeee754<T>
    {
        int k = layout.Members, rowMembers = rows * k;
        var outputs = new T[layout.Layers + 1][];
        var preScale = new T[layout.Layers][];
        var preActivation = new T[layout.Layers][];
        outputs[0] = x[..(rows * layout.Inputs(0))].ToArray();
        for (int l = 0; l < layout.Layers; l++)
        {
            outputs[l + 1] = new T[rowMembers * layout.Outputs(l)];
            preScale[l] = new T[layout[l].HasOutputScale ? rowMembers * layout.Outputs(l) : 0];
            preActivation[l] = new T[layout[l].KeepsPreActivation ? rowMembers * layout.Outputs(l) : 0];
            BatchedDense.ForwardReference<T>(layout[l], k, l == 0, outputs[l], parameters, outputs[l + 1], preScale[l], rows, preActivation[l]);
            if (layout[l].DropsOutputs != 0)
                Dropout.ApplyReference<T>(outputs[l + 1], rowMembers, layout.Outputs(l), settings.DropoutSeed, step, l, settings.DropoutRate);
        }
        return (outputs, preScale, preActivation);
    }

    /// <summary>The (rows k) logits of every row-member (no dropout).</summary>
    public static T[] Logits<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, ReadOnlySpan<T> x, int rows) where T : IFloatingPointIeee754<T> =>
        Forward(layout, parameters, x, rows, new StepSettings(), 0).Outputs[^1];

    /// <summary>P(hit) of each of <paramref name="rows"/> rows: the members' probabilities averaged (no dropout).</summary>
    public static T[] Predict<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, ReadOnlySpan<T> x, int rows) where T : IFloatingPointIeee754<T>
    {
        int k = layout.Members;
        var input = Logits(layout, parameters, x, rows);
        var p = new T[rows];
        for (int r = 0; r < rows; r++)
        {
            T sum = T.Zero;
            for (int i = 0; i < k; i++)
                sum += Activations.SigmoidReference(input[r * k + i]);
            p[r] = sum / T.CreateChecked(k);
        }
        return p;
    }
}
