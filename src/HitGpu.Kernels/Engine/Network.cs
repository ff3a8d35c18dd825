// The network on the device: its buffers, and the training step, the epoch, scoring and prediction, each
// on the path the accelerator suits (layered launches, or the one-launch CPU epoch). The shape is the
// ParameterLayout's; the algorithm's reference is NetworkReference.Step (HitGpu.Kernels).
using HitGpu.Kernels;

namespace HitGpu.Nn;

/// <summary>
/// One part of the data on the device: the network's inputs, labels, and one loss and one correctness slot
/// per sample, which the kernels fill and <see cref="ReadMetrics"/> sums.
/// </summary>
public sealed class DeviceDataset : IDisposable
{
    private readonly ComputeDevice device;
    private readonly DeviceBuffer<float> sums;         // (2) loss and correctness summed on the device (GPUs)
    public DeviceBuffer<float> Features { get; }      // (rows, network inputs)
    public DeviceBuffer<float> Labels { get; }        // (rows)
    public DeviceBuffer<float> SampleLoss { get; }    // (rows)
    public DeviceBuffer<float> SampleCorrect { get; } // (rows)
    public int Rows => Labels.Rows;

    /// <param name="inputs">(rows, width) row-major network inputs</param>
    public DeviceDataset(ComputeDevice device, float[] inputs, int width, float[] labels)
    {
        this.device = device;
        sums = device.Allocate<float>(2);
        Features = device.Upload<float>(inputs, labels.Length, width);
        Labels = device.Upload<float>(labels, labels.Length);
        SampleLoss = device.Allocate<float>(labels.Length);
        SampleCorrect = device.Allocate<float>(labels.Length);
    }

    /// <summary>
    /// Mean loss and accuracy from the per-sample slots: on a GPU summed there (two numbers cross), on the CPU
    /// accelerator on the host in double, in a fixed order (its memory is the host's anyway).
    /// </summary>
    public (double Loss, double Accuracy) ReadMetrics()
    {
        if (device.Kind != AcceleratorKind.Cpu)
        {
            device.SumSamples(SampleLoss.View, SampleCorrect.View, Rows, sums.View);
            var total = sums.ToArray();
            return ((double)total[0] / Rows, (double)total[1] / Rows);
        }
        var loss = SampleLoss.ToArray();
        var correct = SampleCorrect.ToArray();
        double lossSum = 0, correctSum = 0;
        for (int i = 0; i < loss.Length; i++)
        {
            lossSum += loss[i];
            correctSum += correct[i];
        }
        return (lossSum / loss.Length, correctSum / loss.Length);
    }

    public void Dispose()
    {
        sums.Dispose();
        Features.Dispose();
        Labels.Dispose();
        SampleLoss.Dispose();
        SampleCorrect.Dispose();
    }
}

/// <summary>
/// The network's device state: one flat buffer each for parameters, gradients and Adam's two moments, and
/// per layer its activated outputs and dL/dz for up to <see cref="CapacityRows"/> rows of k row-members each
/// (the layout's members). Nothing is allocated inside a training step.
/// </summary>
public sealed class Network : IDisposable
{
    private readonly ComputeDevice device;
    private readonly DeviceBuffer<float>[] outputs;   // layer l: (capacity k, Outputs(l)), activated
    private readonly DeviceBuffer<float>[] deltas;    // layer l: (capacity k, Outputs(l)), dL/dz
    private readonly DeviceBuffer<float>?[] preScale; // layer l with s: (capacity k, Outputs(l)), (x r) W^T
    private readonly DeviceBuffer<float>?[] preActivation; // layer l keeping z (a cosine): (capacity k, Outputs(l))
    private DeviceBuffer<float>? scaledInputGradient; // (capacity k, widest input): g at x r (batched layers with r, or shared input rows)
    private readonly DeviceBuffer<float> probabilities;
    private readonly DeviceBuffer<int> noIndex;
    private readonly DeviceBuffer<LayerShape> layers; // the layout's shapes, for the CPU epoch kernels
    private CpuEpochBuffers? cpuEpoch;
    private DeviceBuffer<AdamStep>? schedule;          // (steps) an epoch's Adam steps, for the CPU epoch
    private DeviceBuffer<int>? identityOrder;
    private DeviceBuffer<float>? predictions;          // (rows) P(hit), for the CPU epoch's predict kernel
    private DeviceBuffer<float>? inputGradient;        // (capacity, inputs) d P(hit) / d input, for explanations

    /// <summary>Which kernels train and score: the accelerator's preference unless set.</summary>
    public TrainingPath Path { get; set; }

    /// <summary>What the CPU epoch kernels need beyond the parameters, made on their first use.</summary>
    private sealed record CpuEpochBuffers(DeviceBuffer<float> ThreadGradients, DeviceBuffer<float> Scratch, int RowsPerThread) : IDisposable
    {
        public void Dispose()
        {
            ThreadGradients.Dispose();
            Scratch.Dispose();
        }
    }

    public ParameterLayout Layout { get; }
    public int CapacityRows { get; }
    public DeviceBuffer<float> Parameters { get; }
    public DeviceBuffer<float> Gradients { get; }
    public DeviceBuffer<float> AdamM { get; }
    public DeviceBuffer<float> AdamV { get; }

    /// <summary>Forward passes outside training (scoring, prediction) take up to this many rows at a time.</summary>
    public const int ChunkRows = 1024;

    /// <summary>A network of the layout's shape with all parameters zero: <see cref="Reset"/> gives it its own.</summary>
    public Network(ComputeDevice device, ParameterLayout layout, int capacityRows)
    {
        if (layout.Outputs(layout.Layers - 1) != 1 || layout.ActivationOf(layout.Layers - 1) != Activation.Identity)
            throw new ArgumentException("the network ends in one logit with no activation (the loss applies the sigmoid)");
        this.device = device;
        Layout = layout;
        CapacityRows = capacityRows;
        Parameters = device.Allocate<float>(layout.Count);
        Gradients = device.Allocate<float>(layout.Count);
        AdamM = device.Allocate<float>(layout.Count);
        AdamV = device.Allocate<float>(layout.Count);
        Parameters.Clear();
        Gradients.Clear();
        AdamM.Clear();
        AdamV.Clear();
        int rowMembers = checked(capacityRows * layout.Members);
        outputs = Enumerable.Range(0, layout.Layers).Select(l => device.Allocate<float>(rowMembers, layout.Outputs(l))).ToArray();
        deltas = Enumerable.Range(0, layout.Layers).Select(l => device.Allocate<float>(rowMembers, layout.Outputs(l))).ToArray();
        preScale = Enumerable.Range(0, layout.Layers).Select(l => layout[l].HasOutputScale ? device.Allocate<float>(rowMembers, layout.Outputs(l)) : null).ToArray();
        preActivation = Enumerable.Range(0, layout.Layers).Select(l => layout[l].KeepsPreActivation ? device.Allocate<float>(rowMembers, layout.Outputs(l)) : null).ToArray();
        probabilities = device.Allocate<float>(capacityRows);
        noIndex = device.Allocate<int>(1);
        layers = device.Upload<LayerShape>(layout.Shapes, layout.Layers);
        Path = device.PreferredTrainingPath;
    }

    /// <summary>New parameters (initial or trained ones, all members') and Adam's moments back to zero.</summary>
    public void Reset(float[] parameters)
    {
        Parameters.CopyFrom(parameters);
        AdamM.Clear();
        AdamV.Clear();
    }

    /// <summary>(rows k) logits of the last forward pass.</summary>
    private DeviceBuffer<float> Logits => outputs[^1];

    /// <summary>(rows k) dL/dz at the logits: the loss kernel writes it, the backward pass starts from it.</summary>
    private DeviceBuffer<float> LogitGradient => deltas[^1];

    /// <summary>Rows [offset, offset + rows) of a (n, inputs) matrix, gathered through an index when one is given.</summary>
    private RowSource Input(DeviceBuffer<float> features, int offset, DeviceBuffer<int>? index = null)
    {
        CheckInputs(features);
        return index is null
            ? RowSource.InPlace(features.View, Layout.Inputs(0), noIndex.View, offset)
            : RowSource.Gather(features.View, Layout.Inputs(0), index.View, offset);
    }

    private RowSource LayerInput(int layer, RowSource input) =>
        layer == 0 ? input : RowSource.InPlace(outputs[layer - 1].View, Layout.Inputs(layer), noIndex.View);

    /// <summary>The forward pass; hidden outputs take the dropout mask of <paramref name="step"/> when the settings ask for dropout.</summary>
    private void Forward(RowSource input, int rows, in StepSettings settings, int step)
    {
        CheckRows(rows);
        int rowMembers = rows * Layout.Members;
        for (int l = 0; l < Layout.Layers; l++)
        {
            // A layer that is one dense layer over the row-members (a plain network's, TabM-mini's shared hidden
            // ones) runs on Dense's kernels, tiled on a GPU; members, adapters and groups need the batched kernels.
            if (Layout.IsDenseOverRowMembers(l))
            {
                device.DenseForward(new DenseForwardArgs
                {
                    X = LayerInput(l, input),
                    Weight = Parameters.Slice(Layout.WeightOffset(l), Layout.Outputs(l) * Layout.Inputs(l)),
                    Bias = Parameters.Slice(Layout.BiasOffset(l), Layout.Outputs(l)),
                    Y = outputs[l].View,
                    Rows = rowMembers, Inputs = Layout.Inputs(l), Outputs = Layout.Outputs(l), Activation = (int)Layout.ActivationOf(l),
                });
            }
            else
            {
                device.BatchedDenseForward(BatchedLayer(l, input, rows));
            }
            if (settings.DropoutRate > 0f && Layout[l].DropsOutputs != 0)
                device.ApplyDropout(new DropoutArgs { Values = outputs[l].View, Rows = rowMembers, Cols = Layout.Outputs(l), Layer = l, Step = step, Seed = settings.DropoutSeed, Rate = settings.DropoutRate });
        }
    }

    /// <summary>The forward pass reversed: from the logits' gradient to every parameter's gradient (same dropout as the forward).</summary>
    private void Backward(RowSource input, int rows, in StepSettings settings, int step, DeviceBuffer<float>? inputGradient = null)
    {
        for (int l = Layout.Layers - 1; l >= 0; l--)
        {
            // Layer 0's input gradient (d / d the network's inputs) only when asked: training never needs it.
            var previousGradient = l > 0 ? deltas[l - 1].View : inputGradient?.View ?? deltas[0].View;
            bool withInputGradient = l > 0 || inputGradient is not null;
            if (Layout.IsDenseOverRowMembers(l))
            {
                device.DenseBackward(new DenseBackwardArgs
                {
                    X = LayerInput(l, input),
                    Weight = Parameters.Slice(Layout.WeightOffset(l), Layout.Outputs(l) * Layout.Inputs(l)),
                    OutputGradient = deltas[l].View,
                    WeightGradient = Gradients.Slice(Layout.WeightOffset(l), Layout.Outputs(l) * Layout.Inputs(l)),
                    BiasGradient = Gradients.Slice(Layout.BiasOffset(l), Layout.Outputs(l)),
                    InputGradient = previousGradient,
                    Rows = rows * Layout.Members, Inputs = Layout.Inputs(l), Outputs = Layout.Outputs(l),
                    InputActivation = (int)Layout.InputActivationOf(l),
                }, withInputGradient);
            }
            else
            {
                // The gradient at x r is kept where the layer has r, or where layer 0's members' input gradients are summed.
                if ((Layout[l].HasInputScale || (l == 0 && withInputGradient)) && scaledInputGradient is null)
                    scaledInputGradient = device.Allocate<float>(CapacityRows * Layout.Members, Layout.Widths.Take(Layout.Layers).Max());
                device.BatchedDenseBackward(BatchedLayer(l, input, rows) with { InputGradient = previousGradient }, withInputGradient);
            }
            // The activation's derivative came from the masked output (0 where dropped); the kept units take the scale.
            if (settings.DropoutRate > 0f && l > 0 && Layout[l - 1].DropsOutputs != 0)
                device.ApplyDropout(new DropoutArgs { Values = deltas[l - 1].View, Rows = rows * Layout.Members, Cols = Layout.Inputs(l), Layer = l - 1, Step = step, Seed = settings.DropoutSeed, Rate = settings.DropoutRate });
        }
    }

    /// <summary>Layer l's batched arguments for a pass over <paramref name="rows"/> rows (the input gradient: none; Backward sets it).</summary>
    private BatchedLayerArgs BatchedLayer(int l, RowSource input, int rows) =>
        new()
        {
            X = LayerInput(l, input), Parameters = Parameters.View, Gradients = Gradients.View,
            PreScale = preScale[l]?.View ?? Gradients.View, Y = outputs[l].View, OutputGradient = deltas[l].View,
            PreActivation = preActivation[l]?.View ?? Gradients.View, InputPreActivation = (l > 0 ? preActivation[l - 1]?.View : null) ?? Gradients.View,
            ScaledInputGradient = scaledInputGradient?.View ?? Gradients.View, InputGradient = Gradients.View,
            Layer = Layout[l], Rows = rows, Members = Layout.Members, InputShared = l == 0 ? 1 : 0, InputActivation = (int)Layout.InputActivationOf(l),
        };

    /// <summary>
    /// Forward, loss and backward for rows [offset, offset + rows) of <paramref name="data"/> (in
    /// <paramref name="order"/> when given) at step <paramref name="step"/> (from 0): <see cref="Gradients"/>
    /// holds d mean loss / d parameter, the data's sample slots each row's loss and correctness.
    /// </summary>
    public void ComputeGradient(DeviceDataset data, int offset, int rows, DeviceBuffer<int>? order, in StepSettings settings, int step)
    {
        var input = Input(data.Features, offset, order);
        Forward(input, rows, settings, step);
        device.BinaryCrossEntropy(new LossArgs
        {
            Logits = Logits.View,
            Labels = order is null ? RowSource.InPlace(data.Labels.View, 1, noIndex.View, offset) : RowSource.Gather(data.Labels.View, 1, order.View, offset),
            LogitGradient = LogitGradient.View,
            SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View,
            Rows = rows, GradientScale = 1f / (rows * Layout.Members), Members = Layout.Members, LabelSmoothing = settings.LabelSmoothing,
        });
        Backward(input, rows, settings, step);
    }

    /// <summary>One layered training step: <see cref="ComputeGradient"/>, then Adam.</summary>
    public void TrainStep(DeviceDataset data, int offset, int rows, DeviceBuffer<int>? order, in StepSettings settings, int step, in AdamStep adam)
    {
        ComputeGradient(data, offset, rows, order, settings, step);
        device.AdamUpdate(Parameters.View, Gradients.View, AdamM.View, AdamV.View, adam);
    }

    /// <summary>
    /// One epoch over <paramref name="data"/> in <paramref name="order"/>: batches of <paramref name="batchSize"/>
    /// rows, batch k taking Adam step <paramref name="schedule"/>[k] and the dropout mask of step
    /// <paramref name="firstStep"/> + k. On <see cref="Path"/>: one launch (CPU epoch) or launches per step.
    /// <paramref name="onBatch"/> hears (batches queued, batches in the epoch).
    /// </summary>
    public void TrainEpoch(DeviceDataset data, DeviceBuffer<int> order, int batchSize, ReadOnlySpan<AdamStep> schedule, in StepSettings settings,
        int firstStep, Action<int, int>? onBatch = null)
    {
        int steps = (data.Rows + batchSize - 1) / batchSize;
        if (schedule.Length != steps)
            throw new ArgumentException($"an epoch of {data.Rows} rows in batches of {batchSize} takes {steps} Adam steps, the schedule has {schedule.Length}");
        if (Path == TrainingPath.Layered)
        {
            for (int k = 0; k < steps; k++)
            {
                int offset = k * batchSize;
                TrainStep(data, offset, Math.Min(batchSize, data.Rows - offset), order, settings, firstStep + k, schedule[k]);
                onBatch?.Invoke(k + 1, steps);
            }
            return;
        }
        CheckInputs(data.Features);
        Schedule(steps).CopyFrom(0, schedule);
        var buffers = CpuEpoch(Math.Min(batchSize, data.Rows));
        device.TrainCpuEpoch(new CpuEpochArgs
        {
            Features = data.Features.View, Labels = data.Labels.View, Order = order.View, SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View,
            Parameters = Parameters.View, AdamM = AdamM.View, AdamV = AdamV.View,
            ThreadGradients = buffers.ThreadGradients.View, Scratch = buffers.Scratch.View, Layers = layers.View, Schedule = Schedule(steps).View,
            Probabilities = probabilities.View,
            Rows = data.Rows, BatchSize = batchSize, RowsPerThread = buffers.RowsPerThread, Settings = settings, FirstStep = firstStep,
        }, Layout);
        onBatch?.Invoke(steps, steps);
    }

    /// <summary>Room for an epoch's Adam steps on the device, made once and kept while big enough.</summary>
    private DeviceBuffer<AdamStep> Schedule(int steps)
    {
        if (schedule is null || schedule.Rows < steps)
        {
            schedule?.Dispose();
            schedule = device.Allocate<AdamStep>(steps);
        }
        return schedule;
    }

    /// <summary>The CPU epoch's buffers for batches of up to <paramref name="rows"/> rows, made once and kept while big enough.</summary>
    private CpuEpochBuffers CpuEpoch(int rows)
    {
        int threads = device.CpuEpochThreads;
        int rowsPerThread = Math.Max(1, (rows + threads - 1) / threads);
        if (cpuEpoch is not null && cpuEpoch.RowsPerThread >= rowsPerThread)
            return cpuEpoch;
        cpuEpoch?.Dispose();
        cpuEpoch = new CpuEpochBuffers(device.Allocate<float>(threads, Layout.Count),
            device.Allocate<float>(threads, checked(2 * rowsPerThread * Layout.Members * Layout.ActivationWidth)), rowsPerThread);
        return cpuEpoch;
    }

    /// <summary>Forward and loss over all of <paramref name="data"/> with no dropout: its mean loss and accuracy.</summary>
    public (double Loss, double Accuracy) Score(DeviceDataset data)
    {
        CheckInputs(data.Features);
        if (Path == TrainingPath.CpuEpoch)
        {
            if (identityOrder is null || identityOrder.Rows < data.Rows)
            {
                identityOrder?.Dispose();
                identityOrder = device.Upload<int>(Enumerable.Range(0, data.Rows).ToArray(), data.Rows);
            }
            var buffers = CpuEpoch(2 * device.CpuEpochThreads); // scratch for four rows a thread
            device.ScoreCpuEpoch(new CpuEpochArgs
            {
                Features = data.Features.View, Labels = data.Labels.View, Order = identityOrder.View, SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View,
                Parameters = Parameters.View, AdamM = AdamM.View, AdamV = AdamV.View,
                ThreadGradients = buffers.ThreadGradients.View, Scratch = buffers.Scratch.View, Layers = layers.View, Schedule = Schedule(1).View,
                Probabilities = probabilities.View, Rows = data.Rows, BatchSize = 1, RowsPerThread = buffers.RowsPerThread,
            }, Layout);
        }
        else
        {
            var noDropout = new StepSettings();
            for (int offset = 0; offset < data.Rows; offset += CapacityRows)
            {
                int rows = Math.Min(CapacityRows, data.Rows - offset);
                Forward(Input(data.Features, offset), rows, noDropout, 0);
                device.BinaryCrossEntropy(new LossArgs
                {
                    Logits = Logits.View,
                    Labels = RowSource.InPlace(data.Labels.View, 1, noIndex.View, offset),
                    LogitGradient = LogitGradient.View,
                    SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View,
                    Rows = rows, GradientScale = 1f / (rows * Layout.Members), Members = Layout.Members, LossOfMean = 1,
                });
            }
        }
        return data.ReadMetrics();
    }

    /// <summary>
    /// P(hit) for the first <paramref name="rows"/> rows of a (n, inputs) matrix, into <paramref name="result"/>:
    /// on the CPU epoch path in one launch, else in chunks of forward launches; the same bits either way.
    /// </summary>
    public void PredictProbabilities(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        if (rows > features.Rows || result.Length < rows)
            throw new ArgumentException($"{rows} rows to predict: the features have {features.Rows}, the result room for {result.Length}");
        if (rows == 0)
            return;
        if (Path == TrainingPath.CpuEpoch)
        {
            CheckInputs(features);
            if (predictions is null || predictions.Rows < rows)
            {
                predictions?.Dispose();
                predictions = device.Allocate<float>(rows);
            }
            var buffers = CpuEpoch(2 * device.CpuEpochThreads); // scratch for four rows a thread
            device.PredictCpuEpoch(new CpuEpochArgs
            {
                Features = features.View, Labels = probabilities.View, Order = noIndex.View, SampleLoss = probabilities.View, SampleCorrect = probabilities.View,
                Probabilities = predictions.View, Parameters = Parameters.View, AdamM = AdamM.View, AdamV = AdamV.View,
                ThreadGradients = buffers.ThreadGradients.View, Scratch = buffers.Scratch.View, Layers = layers.View, Schedule = Schedule(1).View,
                Rows = rows, BatchSize = 1, RowsPerThread = buffers.RowsPerThread,
            }, Layout);
            predictions.CopyTo(0, result[..rows]);
            return;
        }
        var noDropout = new StepSettings();
        for (int offset = 0; offset < rows; offset += CapacityRows)
        {
            int chunk = Math.Min(CapacityRows, rows - offset);
            Forward(Input(features, offset), chunk, noDropout, 0);
            device.MeanProbability(Logits.View, probabilities.View, chunk, Layout.Members);
            probabilities.CopyTo(0, result.Slice(offset, chunk));
        }
    }

    /// <summary>
    /// d P(hit) / d input for the first <paramref name="rows"/> rows of a (n, inputs) matrix, into
    /// <paramref name="result"/> (rows, inputs): forward, the sigmoid's slope at each logit, then the backward
    /// pass down to the inputs (the parameters' gradients are computed on the way and not used).
    /// </summary>
    public void ProbabilityGradient(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        int inputs = Layout.Inputs(0);
        if (rows > features.Rows || result.Length < (long)rows * inputs)
            throw new ArgumentException($"{rows} rows: the features have {features.Rows}, the result room for {result.Length / inputs}");
        inputGradient ??= device.Allocate<float>(CapacityRows, inputs);
        var noDropout = new StepSettings();
        for (int offset = 0; offset < rows; offset += CapacityRows)
        {
            int chunk = Math.Min(CapacityRows, rows - offset);
            var input = Input(features, offset);
            Forward(input, chunk, noDropout, 0);
            device.MeanProbabilitySlope(Logits.View, LogitGradient.View, chunk, Layout.Members);
            Backward(input, chunk, noDropout, 0, inputGradient);
            inputGradient.CopyTo(0, result.Slice(offset * inputs, chunk * inputs));
        }
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
        foreach (var b in preScale.Concat(preActivation))
            b?.Dispose();
        scaledInputGradient?.Dispose();
        probabilities.Dispose();
        noIndex.Dispose();
        layers.Dispose();
        cpuEpoch?.Dispose();
        schedule?.Dispose();
        identityOrder?.Dispose();
        predictions?.Dispose();
        inputGradient?.Dispose();
        Parameters.Dispose();
        Gradients.Dispose();
        AdamM.Dispose();
        AdamV.Dispose();
    }
}
