// Launching the CPU epoch's kernels: each takes its own views (checked on the host against the layout, then
// passed as host addresses), in one group of the plan's threads; the kernels load once, on a worker thread
// while the host reads its data when the plan says that pays.
using ILGPU;

namespace HitGpu.Kernels;

/// <summary>The network's side of every CPU epoch launch: its parameters and layer shapes, and the scratch rows the threads work in.</summary>
public struct EpochNetworkViews
{
    public ArrayView<float> Parameters;    // (count) laid out as the ParameterLayout says
    public ArrayView<LayerShape> Layers;   // the layout's shapes
    public ArrayView<float> Scratch;       // (threads, 2 RowsPerThread k activationWidth): outputs, then deltas
    public int RowsPerThread;
}

/// <summary>One epoch of training: the data, its order, the per-sample slots, Adam's state and schedule.</summary>
public struct EpochTrainViews
{
    public EpochNetworkViews Network;
    public ArrayView<float> Features;        // (n, layer 0's inputs)
    public ArrayView<float> Labels;          // (n) 0 or 1
    public ArrayView<int> Order;             // (n) this epoch's shuffled row order
    public ArrayView<float> SampleLoss;      // (n) per position in Order
    public ArrayView<float> SampleCorrect;   // (n)
    public ArrayView<float> AdamM, AdamV;    // (count)
    public ArrayView<float> ThreadGradients; // (threads, count) one gradient copy per thread
    public ArrayView<AdamStep> Schedule;     // (steps) this epoch's Adam steps
    public int Rows, BatchSize, FirstStep;
    public StepSettings Settings;
}

/// <summary>Scoring rows [0, Rows) in place: each one's loss and correctness.</summary>
public struct EpochScoreViews
{
    public EpochNetworkViews Network;
    public ArrayView<float> Features, Labels, SampleLoss, SampleCorrect;
    public int Rows;
}

/// <summary>P(hit) of rows [0, Rows) in place.</summary>
public struct EpochPredictViews
{
    public EpochNetworkViews Network;
    public ArrayView<float> Features, Probabilities;
    public int Rows;
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, EpochTrainArgs>? cpuEpochTrain;
    private Action<KernelConfig, EpochScoreArgs>? cpuEpochScore;
    private Action<KernelConfig, EpochPredictArgs>? cpuEpochPredict;
    private Task? preparation;

    /// <summary>
    /// Starts loading the kernels of <paramref name="path"/> on a worker thread when the plan says it pays
    /// (<see cref="DevicePlan.LoadsInBackground"/>), so that ILGPU's one-time start overlaps the host's reading
    /// and preparing of the data; the device waits for it before its first use (<see cref="FinishPreparation"/>).
    /// </summary>
    public void PrepareKernels(TrainingPath path)
    {
        if (!Plan.LoadsInBackground(path) || preparation is not null)
            return;
        preparation = Task.Run(() =>
        {
            cpuEpochTrain = LoadKernel<EpochTrainArgs>(CpuEpoch.TrainKernel);
            cpuEpochScore = LoadKernel<EpochScoreArgs>(CpuEpoch.ScoreKernel);
            cpuEpochPredict = LoadKernel<EpochPredictArgs>(CpuEpoch.PredictKernel);
        });
    }

    /// <summary>Waits for <see cref="PrepareKernels"/>'s work, if any: call before the device is used from this thread.</summary>
    public void FinishPreparation()
    {
        var pending = preparation;
        if (pending is null)
            return;
        pending.GetAwaiter().GetResult();
        preparation = null;
    }

    /// <summary>One epoch in one launch.</summary>
    public void TrainCpuEpoch(in EpochTrainViews a, ParameterLayout layout)
    {
        var shape = Check(a.Network, a.Features, a.Rows, layout, "CPU epoch");
        int threads = Plan.OneGroupThreads;
        int steps = (a.Rows + a.BatchSize - 1) / a.BatchSize;
        Require(a.BatchSize >= 1, "CPU epoch: the batch size must be at least 1");
        Require(a.Labels.Length >= a.Rows && a.Order.Length >= a.Rows, "CPU epoch: labels and order shorter than the rows");
        Require(a.SampleLoss.Length >= a.Rows && a.SampleCorrect.Length >= a.Rows, "CPU epoch: per-sample outputs shorter than the rows");
        Require(a.AdamM.Length == layout.Count && a.AdamV.Length == layout.Count, "CPU epoch: moments must have the parameter count");
        Require(a.ThreadGradients.Length >= (long)threads * layout.Count, $"CPU epoch: need {threads} gradient copies");
        Require(a.Network.RowsPerThread >= (Math.Min(a.BatchSize, a.Rows) + threads - 1) / threads, "CPU epoch: scratch rows per thread too few for the batch");
        Require(a.Schedule.Length >= steps, $"CPU epoch: the schedule needs {steps} steps");
        FinishPreparation();
        (cpuEpochTrain ??= LoadKernel<EpochTrainArgs>(CpuEpoch.TrainKernel))(new KernelConfig(1, threads), new EpochTrainArgs
        {
            Memory = Memory(a.Network, a.Features, a.ThreadGradients), Shape = shape,
            Labels = RowMemory.Of(a.Labels), Order = RowMemory.Of(a.Order), SampleLoss = RowMemory.Of(a.SampleLoss),
                SampleCorrect = RowMemory.Of(a.SampleCorrect),
            AdamM = RowMemory.Of(a.AdamM), AdamV = RowMemory.Of(a.AdamV), Schedule = RowMemory.Of(a.Schedule),
            Rows = a.Rows, BatchSize = a.BatchSize, FirstStep = a.FirstStep, Settings = a.Settings,
        });
    }

    /// <summary>Loss and correctness of rows [0, Rows) with the current parameters, in one launch.</summary>
    public void ScoreCpuEpoch(in EpochScoreViews a, ParameterLayout layout)
    {
        var shape = Check(a.Network, a.Features, a.Rows, layout, "CPU epoch score");
        Require(a.Network.RowsPerThread >= 2, "CPU epoch score: scratch too small (four rows a thread)");
        Require(a.Labels.Length >= a.Rows && a.SampleLoss.Length >= a.Rows && a.SampleCorrect.Length >= a.Rows,
            "CPU epoch score: labels and per-sample outputs must hold the rows");
        FinishPreparation();
        (cpuEpochScore ??= LoadKernel<EpochScoreArgs>(CpuEpoch.ScoreKernel))(new KernelConfig(1, Plan.OneGroupThreads), new EpochScoreArgs
        {
            Memory = Memory(a.Network, a.Features, ArrayView<float>.Empty), Shape = shape,
            Labels = RowMemory.Of(a.Labels), SampleLoss = RowMemory.Of(a.SampleLoss), SampleCorrect = RowMemory.Of(a.SampleCorrect), Rows = a.Rows,
        });
    }

    /// <summary>P(hit) of rows [0, Rows) into Probabilities, in one launch.</summary>
    public void PredictCpuEpoch(in EpochPredictViews a, ParameterLayout layout)
    {
        var shape = Check(a.Network, a.Features, a.Rows, layout, "CPU epoch predict");
        Require(a.Network.RowsPerThread >= 2, "CPU epoch predict: scratch too small (four rows a thread)");
        Require(a.Probabilities.Length >= a.Rows, "CPU epoch predict: the probabilities must hold the rows");
        FinishPreparation();
        (cpuEpochPredict ??= LoadKernel<EpochPredictArgs>(CpuEpoch.PredictKernel))(new KernelConfig(1, Plan.OneGroupThreads), new EpochPredictArgs
        {
            Memory = Memory(a.Network, a.Features, ArrayView<float>.Empty), Shape = shape, Probabilities = RowMemory.Of(a.Probabilities), Rows = a.Rows,
        });
    }

    /// <summary>The buffers every CPU epoch kernel shares, checked against the layout; its shape from the layout.</summary>
    private EpochShape Check(in EpochNetworkViews n, ArrayView<float> features, int rows, ParameterLayout layout, string what)
    {
        Require(Plan.Paths.Contains(TrainingPath.CpuEpoch), // a plan is its accelerator's kind (the Plan setter holds it)
            $"{what}: the CPU epoch runs on the CPU accelerator only (it reads host addresses)");
        Require(rows >= 1, $"{what}: at least one row");
        Require(n.Layers.Length == layout.Layers, $"{what}: the device layer shapes must hold the layout's {layout.Layers} layers");
        Require(layout.Outputs(layout.Layers - 1) == 1 && layout.ActivationOf(layout.Layers - 1) == Activation.Identity,
            $"{what}: the last layer must be one logit (no activation: the loss applies the sigmoid)");
        Require(features.Length % layout.Inputs(0) == 0 && features.Length / layout.Inputs(0) >= rows, $"{what}: features must be (rows, {layout.Inputs(0)})");
        Require(n.Parameters.Length == layout.Count, $"{what}: parameters must have the layout's {layout.Count} values");
        Require(n.RowsPerThread >= 1 && n.Scratch.Length >= CpuEpochEngine.ScratchFloats(layout, n.RowsPerThread, Plan.OneGroupThreads),
            $"{what}: scratch too small");
        // The kernels index with 32-bit offsets: the scratch and the gradient copies must be addressable so.
        Require(CpuEpochEngine.ScratchFloats(layout, n.RowsPerThread, Plan.OneGroupThreads) <= int.MaxValue && (long)Plan.OneGroupThreads
            * layout.Count <= int.MaxValue,
            $"{what}: the scratch or the gradient copies pass 2^31 floats: use a smaller batch, network or ensemble");
        return new EpochShape
        {
            Layers = layout.Layers, Members = layout.Members, ParameterCount = layout.Count, ActivationWidth = layout.ActivationWidth,
                RowsPerThread = n.RowsPerThread,
        };
    }

    private static RowMemory Memory(in EpochNetworkViews n, ArrayView<float> features, ArrayView<float> gradients) =>
        new(RowMemory.Of(features), RowMemory.Of(n.Parameters), RowMemory.Of(n.Scratch), RowMemory.Of(n.Layers), RowMemory.Of(gradients));
}
