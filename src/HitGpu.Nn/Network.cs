// The network: a stack of dense layers (ReLU between them, a single logit out), its flat parameter layout,
// the device-side forward and backward passes that call the kernels, and a plain reference of the whole
// network's loss and gradient for the finite-difference check.
using System.Numerics;
using HitGpu.Kernels;

namespace HitGpu.Nn;

/// <summary>
/// Where each layer's weight (out, in) and bias (out) sit in the one flat parameter array:
/// [W0, b0, W1, b1, ...]. Gradients and Adam's moments share the layout, so Adam is one launch.
/// </summary>
public sealed class ParameterLayout
{
    public IReadOnlyList<int> Widths { get; }   // inputs, hidden..., 1
    public int Layers => Widths.Count - 1;
    public int Count { get; }
    private readonly int[] weightOffsets, biasOffsets;

    public ParameterLayout(IReadOnlyList<int> widths)
    {
        if (widths.Count < 2 || widths.Any(w => w < 1))
            throw new ArgumentException($"a network needs at least an input and an output width, all positive; got [{string.Join(",", widths)}]");
        Widths = widths.ToArray();
        weightOffsets = new int[Layers];
        biasOffsets = new int[Layers];
        int offset = 0;
        for (int l = 0; l < Layers; l++)
        {
            weightOffsets[l] = offset;
            offset += Widths[l + 1] * Widths[l];
            biasOffsets[l] = offset;
            offset += Widths[l + 1];
        }
        Count = offset;
    }

    /// <summary>inputs -> hidden... -> one logit.</summary>
    public static ParameterLayout ForClassifier(int inputs, IReadOnlyList<int> hidden) => new([inputs, .. hidden, 1]);

    public int Inputs(int layer) => Widths[layer];
    public int Outputs(int layer) => Widths[layer + 1];
    public int WeightOffset(int layer) => weightOffsets[layer];
    public int BiasOffset(int layer) => biasOffsets[layer];
    public Activation ActivationOf(int layer) => layer == Layers - 1 ? Activation.Identity : Activation.Relu;

    /// <summary>Glorot-uniform weights (Keras' default, as in the original study) and zero biases, from a seed.</summary>
    public float[] Initialize(int seed)
    {
        var rng = new Random(seed);
        var parameters = new float[Count];
        for (int l = 0; l < Layers; l++)
        {
            double limit = Math.Sqrt(6.0 / (Inputs(l) + Outputs(l)));
            for (int i = 0; i < Inputs(l) * Outputs(l); i++)
                parameters[WeightOffset(l) + i] = (float)((rng.NextDouble() * 2 - 1) * limit);
        }
        return parameters;
    }
}

/// <summary>
/// The network's device state: one flat buffer each for parameters, gradients and Adam's two moments, and
/// per layer its activated outputs and dL/dz for up to <see cref="CapacityRows"/> rows. Nothing is
/// allocated after construction.
/// </summary>
public sealed class Network : IDisposable
{
    private readonly ComputeDevice device;
    private readonly DeviceBuffer<float>[] outputs;   // layer l: (capacity, Outputs(l)), activated
    private readonly DeviceBuffer<float>[] deltas;    // layer l: (capacity, Outputs(l)), dL/dz
    private readonly DeviceBuffer<float> probabilities;
    private readonly DeviceBuffer<int> noIndex;
    private FusedBuffers? fused;
    private DeviceBuffer<int>? identityOrder;

    /// <summary>Which kernels <see cref="Score"/> uses; training chooses its own path per epoch.</summary>
    public TrainingPath Path { get; set; }

    /// <summary>What the fused epoch kernel needs beyond the parameters, made on its first use.</summary>
    private sealed record FusedBuffers(DeviceBuffer<float> ThreadGradients, DeviceBuffer<float> Scratch, DeviceBuffer<int> Widths,
        int RowsPerThread, int ActivationWidth) : IDisposable
    {
        public void Dispose()
        {
            ThreadGradients.Dispose();
            Scratch.Dispose();
            Widths.Dispose();
        }
    }

    public ParameterLayout Layout { get; }
    public int CapacityRows { get; }
    public DeviceBuffer<float> Parameters { get; }
    public DeviceBuffer<float> Gradients { get; }
    public DeviceBuffer<float> AdamM { get; }
    public DeviceBuffer<float> AdamV { get; }

    public Network(ComputeDevice device, ParameterLayout layout, int capacityRows, float[] initialParameters)
    {
        this.device = device;
        Layout = layout;
        CapacityRows = capacityRows;
        Parameters = device.Upload<float>(initialParameters, layout.Count);
        Gradients = device.Allocate<float>(layout.Count);
        AdamM = device.Allocate<float>(layout.Count);
        AdamV = device.Allocate<float>(layout.Count);
        Gradients.Clear();
        AdamM.Clear();
        AdamV.Clear();
        outputs = Enumerable.Range(0, layout.Layers).Select(l => device.Allocate<float>(capacityRows, layout.Outputs(l))).ToArray();
        deltas = Enumerable.Range(0, layout.Layers).Select(l => device.Allocate<float>(capacityRows, layout.Outputs(l))).ToArray();
        probabilities = device.Allocate<float>(capacityRows);
        noIndex = device.Allocate<int>(1);
        Path = device.PreferredTrainingPath;
    }

    /// <summary>New parameters (e.g. the next ensemble member's initial ones) and Adam's moments back to zero.</summary>
    public void Reset(float[] parameters)
    {
        Parameters.CopyFrom(parameters);
        AdamM.Clear();
        AdamV.Clear();
    }

    /// <summary>(rows) logits of the last forward pass.</summary>
    public DeviceBuffer<float> Logits => outputs[^1];

    /// <summary>(rows) dL/dz at the logits: the loss kernel writes it, <see cref="Backward"/> starts from it.</summary>
    public DeviceBuffer<float> LogitGradient => deltas[^1];

    /// <summary>Rows [offset, offset + rows) of a (n, inputs) matrix, gathered through an index when one is given.</summary>
    public RowSource Input(DeviceBuffer<float> features, int offset, DeviceBuffer<int>? index = null)
    {
        CheckInputs(features);
        return index is null
            ? RowSource.InPlace(features.View, Layout.Inputs(0), noIndex.View, offset)
            : RowSource.Gather(features.View, Layout.Inputs(0), index.View, offset);
    }

    private RowSource LayerInput(int layer, RowSource input) =>
        layer == 0 ? input : RowSource.InPlace(outputs[layer - 1].View, Layout.Inputs(layer), noIndex.View);

    /// <summary>The forward pass; with a dropout rate above 0 (training), hidden outputs are masked for step <paramref name="step"/>.</summary>
    public void Forward(RowSource input, int rows, float dropoutRate = 0f, uint dropoutSeed = 0, int step = 0)
    {
        CheckRows(rows);
        for (int l = 0; l < Layout.Layers; l++)
        {
            device.DenseForward(new DenseForwardArgs
            {
                X = LayerInput(l, input),
                Weight = Parameters.Slice(Layout.WeightOffset(l), Layout.Outputs(l) * Layout.Inputs(l)),
                Bias = Parameters.Slice(Layout.BiasOffset(l), Layout.Outputs(l)),
                Y = outputs[l].View,
                Rows = rows, Inputs = Layout.Inputs(l), Outputs = Layout.Outputs(l), Activation = (int)Layout.ActivationOf(l),
            });
            if (dropoutRate > 0f && l < Layout.Layers - 1)
                device.ApplyDropout(new DropoutArgs { Values = outputs[l].View, Rows = rows, Cols = Layout.Outputs(l), Layer = l, Step = step, Seed = dropoutSeed, Rate = dropoutRate });
        }
    }

    /// <summary>The forward pass reversed: from <see cref="LogitGradient"/> to every parameter's gradient (same dropout as the forward).</summary>
    public void Backward(RowSource input, int rows, float dropoutRate = 0f, uint dropoutSeed = 0, int step = 0)
    {
        CheckRows(rows);
        for (int l = Layout.Layers - 1; l >= 0; l--)
        {
            device.DenseBackward(new DenseBackwardArgs
            {
                X = LayerInput(l, input),
                Weight = Parameters.Slice(Layout.WeightOffset(l), Layout.Outputs(l) * Layout.Inputs(l)),
                OutputGradient = deltas[l].View,
                WeightGradient = Gradients.Slice(Layout.WeightOffset(l), Layout.Outputs(l) * Layout.Inputs(l)),
                BiasGradient = Gradients.Slice(Layout.BiasOffset(l), Layout.Outputs(l)),
                InputGradient = l > 0 ? deltas[l - 1].View : deltas[0].View,
                Rows = rows, Inputs = Layout.Inputs(l), Outputs = Layout.Outputs(l),
                InputActivation = l > 0 ? (int)Layout.ActivationOf(l - 1) : (int)Activation.Identity,
            }, withInputGradient: l > 0);
            // ReLU's derivative came from the masked output (0 where dropped); the kept units take the scale.
            if (dropoutRate > 0f && l > 0)
                device.ApplyDropout(new DropoutArgs { Values = deltas[l - 1].View, Rows = rows, Cols = Layout.Inputs(l), Layer = l - 1, Step = step, Seed = dropoutSeed, Rate = dropoutRate });
        }
    }

    public void Update(in AdamStep step) => device.AdamUpdate(Parameters.View, Gradients.View, AdamM.View, AdamV.View, step);

    /// <summary>
    /// One epoch in one launch (<see cref="TrainingPath.FusedEpoch"/>): batches of <paramref name="batchSize"/>
    /// rows in the given order, Adam with one (learning rate, 1 - b1^t, 1 - b2^t) row of the schedule per step.
    /// </summary>
    public void TrainEpochFused(DeviceBuffer<float> features, DeviceBuffer<float> labels, DeviceBuffer<int> order, int batchSize,
        DeviceBuffer<float> schedule, DeviceBuffer<float> sampleLoss, DeviceBuffer<float> sampleCorrect, float weightDecay = 0f,
        float dropoutRate = 0f, uint dropoutSeed = 0, int firstStep = 0)
    {
        CheckInputs(features);
        var fused = Fused(Math.Min(batchSize, features.Rows));
        device.TrainEpochFused(new FusedEpochArgs
        {
            Features = features.View, Labels = labels.View, Order = order.View, SampleLoss = sampleLoss.View, SampleCorrect = sampleCorrect.View,
            Parameters = Parameters.View, AdamM = AdamM.View, AdamV = AdamV.View,
            ThreadGradients = fused.ThreadGradients.View, Scratch = fused.Scratch.View, Widths = fused.Widths.View, Schedule = schedule.View,
            Rows = features.Rows, BatchSize = batchSize, Layers = Layout.Layers, ParameterCount = Layout.Count,
            RowsPerThread = fused.RowsPerThread, ActivationWidth = fused.ActivationWidth,
            Beta1 = AdamStep.DefaultBeta1, Beta2 = AdamStep.DefaultBeta2, Epsilon = AdamStep.DefaultEpsilon, WeightDecay = weightDecay,
            DropoutRate = dropoutRate, DropoutSeed = dropoutSeed, FirstStep = firstStep,
        });
    }

    /// <summary>The fused kernels' buffers for batches of up to <paramref name="rows"/> rows, made once and kept while big enough.</summary>
    private FusedBuffers Fused(int rows)
    {
        int threads = device.FusedThreads;
        int rowsPerThread = Math.Max(1, (rows + threads - 1) / threads);
        if (fused is not null && fused.RowsPerThread >= rowsPerThread)
            return fused;
        fused?.Dispose();
        int activationWidth = Layout.Widths.Skip(1).Sum();
        fused = new FusedBuffers(device.Allocate<float>(threads, Layout.Count),
            device.Allocate<float>(threads, 2 * rowsPerThread * activationWidth), device.Upload<int>(Layout.Widths.ToArray(), Layout.Widths.Count),
            rowsPerThread, activationWidth);
        return fused;
    }

    /// <summary>
    /// Forward and loss over a whole (n, inputs) matrix, in chunks of <see cref="CapacityRows"/>: each
    /// sample's loss and correctness land in <paramref name="sampleLoss"/> and <paramref name="sampleCorrect"/>.
    /// </summary>
    public void Score(DeviceBuffer<float> features, DeviceBuffer<float> labels, DeviceBuffer<float> sampleLoss, DeviceBuffer<float> sampleCorrect)
    {
        CheckInputs(features);
        if (Path == TrainingPath.FusedEpoch)
        {
            if (identityOrder is null || identityOrder.Rows < features.Rows)
            {
                identityOrder?.Dispose();
                identityOrder = device.Upload<int>(Enumerable.Range(0, features.Rows).ToArray(), features.Rows);
            }
            var fused = Fused(1);
            device.ScoreFused(new FusedEpochArgs
            {
                Features = features.View, Labels = labels.View, Order = identityOrder.View, SampleLoss = sampleLoss.View, SampleCorrect = sampleCorrect.View,
                Parameters = Parameters.View, AdamM = AdamM.View, AdamV = AdamV.View,
                ThreadGradients = fused.ThreadGradients.View, Scratch = fused.Scratch.View, Widths = fused.Widths.View, Schedule = noIndex.View.Cast<float>(),
                Rows = features.Rows, BatchSize = 1, Layers = Layout.Layers, ParameterCount = Layout.Count,
                RowsPerThread = fused.RowsPerThread, ActivationWidth = fused.ActivationWidth,
            });
            return;
        }
        for (int offset = 0; offset < features.Rows; offset += CapacityRows)
        {
            int rows = Math.Min(CapacityRows, features.Rows - offset);
            Forward(Input(features, offset), rows);
            device.BinaryCrossEntropy(new LossArgs
            {
                Logits = Logits.View,
                Labels = RowSource.InPlace(labels.View, 1, noIndex.View, offset),
                LogitGradient = LogitGradient.View,
                SampleLoss = sampleLoss.View, SampleCorrect = sampleCorrect.View,
                Rows = rows, GradientScale = 1f / rows,
            });
        }
    }

    /// <summary>P(hit) for every row of a (n, inputs) matrix.</summary>
    public float[] PredictProbabilities(DeviceBuffer<float> features)
    {
        var result = new float[features.Rows];
        for (int offset = 0; offset < features.Rows; offset += CapacityRows)
        {
            int rows = Math.Min(CapacityRows, features.Rows - offset);
            Forward(Input(features, offset), rows);
            device.ApplyActivation(Logits.View, probabilities.View, rows, Activation.Sigmoid);
            probabilities.CopyTo(0, result.AsSpan(offset, rows));
        }
        return result;
    }

    private void CheckInputs(DeviceBuffer<float> features)
    {
        if (features.Cols != Layout.Inputs(0))
            throw new ArgumentException($"the network reads {Layout.Inputs(0)} inputs per row, the features have {features.Cols}");
    }

    private void CheckRows(int rows)
    {
        if (rows < 1 || rows > CapacityRows)
            throw new ArgumentOutOfRangeException(nameof(rows), $"a pass takes 1 to {CapacityRows} rows, got {rows}");
    }

    public void Dispose()
    {
        foreach (var b in outputs.Concat(deltas))
            b.Dispose();
        probabilities.Dispose();
        noIndex.Dispose();
        fused?.Dispose();
        identityOrder?.Dispose();
        Parameters.Dispose();
        Gradients.Dispose();
        AdamM.Dispose();
        AdamV.Dispose();
    }

    // ---- reference: the whole network's mean loss and its gradient, on the host, in any float type ----

    /// <summary>
    /// Mean binary cross-entropy of the network over (rows, inputs) <paramref name="x"/> and labels
    /// <paramref name="y"/>, and (when <paramref name="gradient"/> is not empty) d loss / d parameter,
    /// built from the layer references alone.
    /// </summary>
    public static T LossAndGradientReference<T>(ParameterLayout layout, ReadOnlySpan<T> parameters, ReadOnlySpan<T> x, ReadOnlySpan<T> y,
        int rows, Span<T> gradient) where T : IFloatingPointIeee754<T>
    {
        var activations = new T[layout.Layers + 1][];
        activations[0] = x.ToArray();
        for (int l = 0; l < layout.Layers; l++)
        {
            activations[l + 1] = new T[rows * layout.Outputs(l)];
            Dense.ForwardReference<T>(activations[l], parameters.Slice(layout.WeightOffset(l), layout.Outputs(l) * layout.Inputs(l)),
                parameters.Slice(layout.BiasOffset(l), layout.Outputs(l)), activations[l + 1], rows, layout.Inputs(l), layout.Outputs(l), layout.ActivationOf(l));
        }
        T loss = T.Zero, n = T.CreateChecked(rows);
        var delta = new T[rows];
        for (int r = 0; r < rows; r++)
        {
            loss += Loss.BinaryCrossEntropyReference(activations[^1][r], y[r]);
            delta[r] = Loss.GradientReference(activations[^1][r], y[r]) / n;
        }
        if (gradient.IsEmpty)
            return loss / n;
        for (int l = layout.Layers - 1; l >= 0; l--)
        {
            var inputDelta = l > 0 ? new T[rows * layout.Inputs(l)] : [];
            Dense.BackwardReference<T>(activations[l], parameters.Slice(layout.WeightOffset(l), layout.Outputs(l) * layout.Inputs(l)), delta,
                gradient.Slice(layout.WeightOffset(l), layout.Outputs(l) * layout.Inputs(l)), gradient.Slice(layout.BiasOffset(l), layout.Outputs(l)),
                inputDelta, rows, layout.Inputs(l), layout.Outputs(l), l > 0 ? layout.ActivationOf(l - 1) : Activation.Identity);
            delta = inputDelta;
        }
        return loss / n;
    }
}
