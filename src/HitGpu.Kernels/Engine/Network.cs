// The network on the device: its flat buffers (parameters, gradients, Adam's two moments: one array each, laid
// out as the ParameterLayout says) and the engine the device plan picks for it, which trains an epoch, scores
// and predicts. The algorithm's reference is NetworkReference.Step.
namespace HitGpu.Kernels;

/// <summary>
/// The network's device state: one flat buffer each for parameters, gradients and Adam's two moments, the
/// layout's shapes for the kernels, and its engine (<see cref="Path"/>). Nothing is allocated inside a
/// training step. Not for several threads at once (its buffers are one pass's state): share a Predictor,
/// which lets one call at a time use its network.
/// </summary>
public sealed class Network : IDisposable
{
    private LayeredEngine? layered;  // the layered passes: the layered path's engine, and explanations on every path (made on first use)
    private readonly INetworkEngine engine;

    private LayeredEngine Layered => layered ??= new LayeredEngine(this, Device);

    public ComputeDevice Device { get; }
    public ParameterLayout Layout { get; }

    /// <summary>Rows a layered pass takes at once (a batch, or a chunk of scoring and prediction).</summary>
    public int CapacityRows { get; }

    /// <summary>Which engine trains, scores and predicts: the device plan's choice (<see cref="DevicePlan.PathFor"/>).</summary>
    public TrainingPath Path { get; }

    public DeviceBuffer<float> Parameters { get; }
    public DeviceBuffer<float> Gradients { get; }
    public DeviceBuffer<float> AdamM { get; }
    public DeviceBuffer<float> AdamV { get; }
    internal DeviceBuffer<LayerShape> LayerShapes { get; }

    /// <summary>Forward passes outside training (scoring, prediction) take up to this many rows at a time.</summary>
    public const int ChunkRows = 1024;

    /// <summary>
    /// A network of the layout's shape with all parameters zero (<see cref="Reset"/> gives it its own), on the
    /// path the plan picks for training in batches of <paramref name="batchRows"/> unless one is asked for. Without
    /// a batch (a network that only predicts or explains) the plan's path for no particular network: on a GPU
    /// the layered one, whose passes explanations run anyway.
    /// </summary>
    public Network(ComputeDevice device, ParameterLayout layout, int capacityRows, TrainingPath? path = null, int? batchRows = null)
    {
        if (layout.Outputs(layout.Layers - 1) != 1 || layout.ActivationOf(layout.Layers - 1) != Activation.Identity)
            throw new ArgumentException("the network ends in one logit with no activation (the loss applies the sigmoid)");
        Path = batchRows is { } rows ? device.Plan.PathFor(path, layout, rows) : device.Plan.PathFor(path);
        Device = device;
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
        LayerShapes = device.Upload<LayerShape>(layout.Shapes, layout.Layers);
        engine = device.Plan.EngineFor(this, () => Layered, Path);
    }

    /// <summary>
    /// Device memory a network of this layout takes, about, before it is made: the flat buffers (parameters,
    /// gradients, two moments), the layered passes' activations for <paramref name="capacityRows"/> rows of k
    /// row-members, and its engine's own (the CPU epoch's per-thread gradient copies and scratch rows for
    /// batches of <paramref name="batchRows"/>).
    /// </summary>
    public static long DeviceBytes(ComputeDevice device, ParameterLayout layout, int capacityRows, int batchRows, TrainingPath path)
    {
        long flat = 4L * layout.Count;
        long rowMembers = (long)capacityRows * layout.Members;
        long activations = 4L * rowMembers * (2L * layout.Widths.Skip(1).Sum(w => (long)w) + layout.ActivationWidth);
        return 4 * flat + activations + device.Plan.EngineBytes(layout, batchRows, path);
    }

    /// <summary>New parameters (initial or trained ones, all members') and Adam's moments back to zero.</summary>
    public void Reset(float[] parameters)
    {
        Parameters.CopyFrom(parameters);
        AdamM.Clear();
        AdamV.Clear();
    }

    /// <summary>
    /// Forward, loss and backward (layered) for rows [offset, offset + rows) of <paramref name="data"/> (in
    /// <paramref name="order"/> when given) at step <paramref name="step"/> (from 0): <see cref="Gradients"/>
    /// holds d mean loss / d parameter, the data's sample slots each row's loss and correctness.
    /// </summary>
    public void ComputeGradient(DeviceDataset data, int offset, int rows, DeviceBuffer<int>? order, in StepSettings settings, int step)
    {
        CheckInputs(data.Features);
        Layered.ComputeGradient(data, offset, rows, order, settings, step);
    }

    /// <summary>
    /// One epoch over <paramref name="data"/> in <paramref name="order"/>: batches of <paramref name="batchSize"/>
    /// rows, batch k taking Adam step <paramref name="schedule"/>[k] and the dropout mask of step
    /// <paramref name="firstStep"/> + k. <paramref name="onBatch"/> hears (batches done, batches in the epoch).
    /// </summary>
    public void TrainEpoch(DeviceDataset data, DeviceBuffer<int> order, int batchSize, ReadOnlySpan<AdamStep> schedule, in StepSettings settings,
        int firstStep, Action<int, int>? onBatch = null)
    {
        int steps = (data.Rows + batchSize - 1) / batchSize;
        if (schedule.Length != steps)
            throw new ArgumentException($"an epoch of {data.Rows} rows in batches of {batchSize} takes {steps} Adam steps, the schedule has {schedule.Length}");
        CheckInputs(data.Features);
        engine.TrainEpoch(data, order, batchSize, schedule, settings, firstStep, onBatch);
    }

    /// <summary>Forward and loss over all of <paramref name="data"/> with no dropout: its mean loss (of the members' mean probability) and accuracy.</summary>
    public (double Loss, double Accuracy) Score(DeviceDataset data)
    {
        CheckInputs(data.Features);
        engine.Score(data);
        return data.ReadMetrics();
    }

    /// <summary>
    /// P(hit) for the first <paramref name="rows"/> rows of a (n, inputs) matrix, into <paramref name="result"/>.
    /// On the CPU accelerator the same bits on either path (both sum <see cref="SumOrder.FromBias"/>); a GPU's tiled kernels round otherwise.
    /// </summary>
    public void PredictProbabilities(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        if (rows > features.Rows || result.Length < rows)
            throw new ArgumentException($"{rows} rows to predict: the features have {features.Rows}, the result room for {result.Length}");
        CheckInputs(features);
        if (rows > 0)
            engine.Predict(features, rows, result);
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
        CheckInputs(features);
        Layered.ProbabilityGradient(features, rows, result);
    }

    private void CheckInputs(DeviceBuffer<float> features)
    {
        if (features.Cols != Layout.Inputs(0))
            throw new ArgumentException($"the network reads {Layout.Inputs(0)} inputs per row, the features have {features.Cols}");
    }

    public void Dispose()
    {
        if (!ReferenceEquals(engine, layered))
            engine.Dispose();
        layered?.Dispose();
        LayerShapes.Dispose();
        Parameters.Dispose();
        Gradients.Dispose();
        AdamM.Dispose();
        AdamV.Dispose();
    }
}
