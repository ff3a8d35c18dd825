// The layered engine: one launch per layer and pass, many threads each (suits a GPU). Per step L layer
// forwards (BatchedDense's, a plain layer its one member; bias and activation fused), the loss (sigmoid fused: dL/dz = (p - y) / (batch k)), L parameter
// gradients and L - 1 input gradients (the activation's derivative fused), Adam over the flat buffer, and two
// dropout launches per hidden layer when dropout is on. It also runs explanations (d P(hit) / d input) on
// every path. Its per-layer activations are allocated once for the network's capacity of rows.
using ILGPU;

namespace HitGpu.Kernels;

internal sealed class LayeredEngine : INetworkEngine
{
    private readonly Network network;
    private readonly ComputeDevice device;
    private readonly ParameterLayout layout;
    private readonly DeviceBuffer<float>[] outputs;   // layer l: (capacity k, Outputs(l)), activated
    private readonly DeviceBuffer<float>[] deltas;    // layer l: (capacity k, Outputs(l)), dL/dz
    private readonly DeviceBuffer<float>?[] preScale; // layer l with s: (capacity k, Outputs(l)), (x r) W^T
    private readonly DeviceBuffer<float>?[] preActivation; // layer l keeping z (a cosine): (capacity k, Outputs(l))
    private DeviceBuffer<float>? scaledInputGradient; // (capacity k, widest input): g at x r (batched layers with r, or shared input rows)
    private readonly DeviceBuffer<float> probabilities; // (capacity) P(hit) of a chunk
    private DeviceBuffer<float>? inputGradient;       // (capacity, inputs) d P(hit) / d input, for explanations

    public LayeredEngine(Network network, ComputeDevice device)
    {
        this.network = network;
        this.device = device;
        layout = network.Layout;
        int rowMembers = checked(network.CapacityRows * layout.Members);
        outputs = Enumerable.Range(0, layout.Layers).Select(l => device.Allocate<float>(rowMembers, layout.Outputs(l))).ToArray();
        deltas = Enumerable.Range(0, layout.Layers).Select(l => device.Allocate<float>(rowMembers, layout.Outputs(l))).ToArray();
        preScale = Enumerable.Range(0, layout.Layers).Select(l => layout[l].HasOutputScale ? device.Allocate<float>(rowMembers, layout.Outputs(l))
            : null).ToArray();
        preActivation = Enumerable.Range(0, layout.Layers).Select(l => layout[l].KeepsPreActivation
            ? device.Allocate<float>(rowMembers, layout.Outputs(l)) : null).ToArray();
        probabilities = device.Allocate<float>(network.CapacityRows);
    }

    /// <summary>(rows k) logits of the last forward pass.</summary>
    private DeviceBuffer<float> Logits => outputs[^1];

    /// <summary>(rows k) dL/dz at the logits: the loss kernel writes it, the backward pass starts from it.</summary>
    private DeviceBuffer<float> LogitGradient => deltas[^1];

    /// <summary>Rows [offset, offset + rows) of a (n, inputs) matrix, gathered through an index when one is given.</summary>
    private RowSource Input(DeviceBuffer<float> features, int offset, DeviceBuffer<int>? index = null) =>
        index is null
            ? RowSource.InPlace(features.View, layout.Inputs(0), offset)
            : RowSource.Gather(features.View, layout.Inputs(0), index.View, offset);

    private RowSource LayerInput(int layer, RowSource input) =>
        layer == 0 ? input : RowSource.InPlace(outputs[layer - 1].View, layout.Inputs(layer));

    /// <summary>The forward pass; hidden outputs take the dropout mask of <paramref name="step"/> when the settings ask for dropout.</summary>
    private void Forward(RowSource input, int rows, in StepSettings settings, int step)
    {
        if (rows < 1 || rows > network.CapacityRows)
            throw new ArgumentOutOfRangeException(nameof(rows), $"a pass takes 1 to {network.CapacityRows} rows, got {rows}");
        int rowMembers = rows * layout.Members;
        for (int l = 0; l < layout.Layers; l++)
        {
            device.BatchedDenseForward(BatchedLayer(l, input, rows, inputGradient: ArrayView<float>.Empty));
            if (settings.DropoutRate > 0f && layout[l].DropsOutputs != 0)
                device.ApplyDropout(new DropoutArgs { Values = outputs[l].View, Rows = rowMembers, Cols = layout.Outputs(l), Layer = l, Step = step,
                    Seed = settings.DropoutSeed, Rate = settings.DropoutRate });
        }
    }

    /// <summary>The forward pass reversed: from the logits' gradient to every parameter's gradient (same dropout as the forward).</summary>
    private void Backward(RowSource input, int rows, in StepSettings settings, int step, DeviceBuffer<float>? inputGradient = null)
    {
        for (int l = layout.Layers - 1; l >= 0; l--)
        {
            // Layer 0's input gradient (d / d the network's inputs) only when asked: training never needs it.
            var previousGradient = l > 0 ? deltas[l - 1].View : inputGradient?.View ?? ArrayView<float>.Empty;
            bool withInputGradient = l > 0 || inputGradient is not null;
            // The gradient at x r is kept where the layer has r, or where layer 0's members' input gradients are summed.
            if ((layout[l].HasInputScale || (l == 0 && withInputGradient)) && scaledInputGradient is null)
                scaledInputGradient = device.Allocate<float>(network.CapacityRows * layout.Members, layout.Widths.Take(layout.Layers).Max());
            device.BatchedDenseBackward(BatchedLayer(l, input, rows, previousGradient), withInputGradient);
            // The activation's derivative came from the masked output (0 where dropped); the kept units take the scale.
            if (settings.DropoutRate > 0f && l > 0 && layout[l - 1].DropsOutputs != 0)
                device.ApplyDropout(new DropoutArgs { Values = deltas[l - 1].View, Rows = rows * layout.Members, Cols = layout.Inputs(l),
                    Layer = l - 1, Step = step, Seed = settings.DropoutSeed, Rate = settings.DropoutRate });
        }
    }

    /// <summary>Layer l's batched arguments for a pass over <paramref name="rows"/> rows; a buffer the layer does not have is an empty view.</summary>
    private BatchedLayerArgs BatchedLayer(int l, RowSource input, int rows, ArrayView<float> inputGradient) =>
        new()
        {
            X = LayerInput(l, input), Parameters = network.Parameters.View, Gradients = network.Gradients.View,
            PreScale = preScale[l]?.View ?? ArrayView<float>.Empty, Y = outputs[l].View, OutputGradient = deltas[l].View,
            PreActivation = preActivation[l]?.View ?? ArrayView<float>.Empty,
                InputPreActivation = (l > 0 ? preActivation[l - 1]?.View : null) ?? ArrayView<float>.Empty,
            ScaledInputGradient = scaledInputGradient?.View ?? ArrayView<float>.Empty, InputGradient = inputGradient,
            Layer = layout[l], Rows = rows, Members = layout.Members, InputShared = l == 0 ? 1 : 0, InputActivation = (int)layout.InputActivationOf(l),
        };

    /// <summary>The loss of the last forward pass: dL/dz at the logits, and each row's loss and correctness into the data's slots.</summary>
    private void Loss(DeviceDataset data, int offset, int rows, DeviceBuffer<int>? order, float labelSmoothing, int lossOfMean) =>
        device.BinaryCrossEntropy(new LossArgs
        {
            Logits = Logits.View,
            Labels = order is null ? RowSource.InPlace(data.Labels.View, 1, offset) : RowSource.Gather(data.Labels.View, 1, order.View, offset),
            LogitGradient = LogitGradient.View,
            SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View,
            Rows = rows, GradientScale = 1f / (rows * layout.Members), Members = layout.Members, LabelSmoothing = labelSmoothing, LossOfMean = lossOfMean,
        });

    /// <summary>Forward, loss and backward for rows [offset, offset + rows) of the data (in the order when given): the network's gradients.</summary>
    public void ComputeGradient(DeviceDataset data, int offset, int rows, DeviceBuffer<int>? order, in StepSettings settings, int step)
    {
        var input = Input(data.Features, offset, order);
        Forward(input, rows, settings, step);
        Loss(data, offset, rows, order, settings.LabelSmoothing, lossOfMean: 0);
        Backward(input, rows, settings, step);
    }

    /// <summary>One step: <see cref="ComputeGradient"/>, then Adam.</summary>
    public void TrainStep(DeviceDataset data, int offset, int rows, DeviceBuffer<int>? order, in StepSettings settings, int step, in AdamStep adam)
    {
        ComputeGradient(data, offset, rows, order, settings, step);
        device.AdamUpdate(network.Parameters.View, network.Gradients.View, network.AdamM.View, network.AdamV.View, adam);
    }

    public void TrainEpoch(DeviceDataset data, DeviceBuffer<int> order, int batchSize, ReadOnlySpan<AdamStep> schedule, in StepSettings settings,
        int firstStep, Action<int, int>? onBatch)
    {
        for (int k = 0; k < schedule.Length; k++)
        {
            int offset = k * batchSize;
            TrainStep(data, offset, Math.Min(batchSize, data.Rows - offset), order, settings, firstStep + k, schedule[k]);
            onBatch?.Invoke(k + 1, schedule.Length);
        }
    }

    public void Score(DeviceDataset data)
    {
        var noDropout = new StepSettings();
        for (int offset = 0; offset < data.Rows; offset += network.CapacityRows)
        {
            int rows = Math.Min(network.CapacityRows, data.Rows - offset);
            Forward(Input(data.Features, offset), rows, noDropout, 0);
            Loss(data, offset, rows, order: null, labelSmoothing: 0f, lossOfMean: 1);
        }
    }

    public void Predict(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        var noDropout = new StepSettings();
        for (int offset = 0; offset < rows; offset += network.CapacityRows)
        {
            int chunk = Math.Min(network.CapacityRows, rows - offset);
            Forward(Input(features, offset), chunk, noDropout, 0);
            device.MeanProbability(Logits.View, probabilities.View, chunk, layout.Members);
            probabilities.CopyTo(0, result.Slice(offset, chunk));
        }
    }

    /// <summary>d P(hit) / d input of the first rows of (n, inputs) features: forward, the sigmoid's slope at each logit, then the backward pass down to
    /// the inputs.</summary>
    public void ProbabilityGradient(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        int inputs = layout.Inputs(0);
        inputGradient ??= device.Allocate<float>(network.CapacityRows, inputs);
        var noDropout = new StepSettings();
        for (int offset = 0; offset < rows; offset += network.CapacityRows)
        {
            int chunk = Math.Min(network.CapacityRows, rows - offset);
            var input = Input(features, offset);
            Forward(input, chunk, noDropout, 0);
            device.MeanProbabilitySlope(Logits.View, LogitGradient.View, chunk, layout.Members);
            Backward(input, chunk, noDropout, 0, inputGradient);
            inputGradient.CopyTo(0, result.Slice(offset * inputs, chunk * inputs));
        }
    }

    public void Dispose()
    {
        foreach (var b in outputs.Concat(deltas))
            b.Dispose();
        foreach (var b in preScale.Concat(preActivation))
            b?.Dispose();
        scaledInputGradient?.Dispose();
        inputGradient?.Dispose();
        probabilities.Dispose();
    }
}
