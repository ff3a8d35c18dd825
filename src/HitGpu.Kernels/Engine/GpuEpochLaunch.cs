// Launching the GPU epoch's kernels: the views checked on the host against the layout and the plan (what fits
// in a group's shared memory), then one group per run (training) or per chunk of a run's rows (scoring).
using ILGPU;
using ILGPU.Runtime;

namespace HitGpu.Kernels;

/// <summary>One launch of training epochs: <see cref="RunCount"/> runs of one layout, each its tensors at run x their length.</summary>
public struct GpuEpochTrainViews
{
    public ArrayView<float> Features, Labels;          // (n, inputs), (n): the rows every run's order indexes
    public ArrayView<LayerShape> Layers;               // the layout's shapes
    public ArrayView<float> Parameters, AdamM, AdamV;  // (runs, count)
    public ArrayView<int> Order;                       // (runs, Positions)
    public ArrayView<float> SampleLoss, SampleCorrect; // (runs, Positions)
    public ArrayView<EpochRun> Runs;                   // (runs): rows (at most Positions), first step, settings
    public ArrayView<AdamStep> Schedule;               // (runs, Steps): each run's steps (at least its rows' batches)
    public int RunCount, Positions, Steps, BatchSize;
}

/// <summary>One launch of scoring (with labels) or prediction (without: P(hit) into LossOrProbability) for <see cref="RunCount"/> runs.</summary>
public struct GpuEpochScoreViews
{
    public ArrayView<float> Features, Labels;          // labels empty: prediction
    public ArrayView<LayerShape> Layers;
    public ArrayView<float> Parameters;                // (runs, count)
    public ArrayView<int> Order;                       // (runs, Positions); empty: each run's rows [0, Rows) in place
    public ArrayView<float> LossOrProbability, SampleCorrect; // (runs, Positions)
    public ArrayView<EpochRun> Runs;                   // (runs): the rows of each
    public int RunCount, Positions, MaxRows;           // MaxRows: the most rows any run has (the chunks to launch)
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, GpuEpochTrainArgs>? gpuEpochTrain;
    private Action<KernelConfig, GpuEpochScoreArgs>? gpuEpochScore;
    private int gpuEpochTrainShared, gpuEpochScoreShared; // the shared bytes each kernel was let have (CudaSharedMemory)

    /// <summary>One epoch of every run, one group a run, in one launch.</summary>
    public void TrainGpuEpoch(in GpuEpochTrainViews a, ParameterLayout layout)
    {
        var shape = CheckGpuEpoch(a.Layers, a.Features, a.Parameters, a.RunCount, layout, Math.Min(a.BatchSize, a.Positions), "GPU epoch");
        Require(a.BatchSize >= 1 && a.Positions >= 1, "GPU epoch: the batch size and the positions must be at least 1");
        string? why = Plan.GpuEpochDoesNotFit(layout, Math.Min(a.BatchSize, a.Positions));
        Require(why is null, $"GPU epoch: {why}");
        long runPositions = (long)a.RunCount * a.Positions;
        Require(a.Labels.Length * layout.Inputs(0) == a.Features.Length, "GPU epoch: one label per feature row");
        Require(a.Order.Length >= runPositions && a.SampleLoss.Length >= runPositions && a.SampleCorrect.Length >= runPositions,
            "GPU epoch: the order and the per-sample outputs must hold every run's positions");
        Require(a.AdamM.Length == a.Parameters.Length && a.AdamV.Length == a.Parameters.Length, "GPU epoch: the moments must have the parameters' length");
        Require(a.Runs.Length >= a.RunCount && a.Schedule.Length >= (long)a.RunCount * a.Steps, "GPU epoch: a run entry and Steps schedule entries per run");
        Require(a.Steps >= (a.Positions + a.BatchSize - 1) / a.BatchSize,
            $"GPU epoch: {a.Positions} positions in batches of {a.BatchSize} need {(a.Positions + a.BatchSize - 1) / a.BatchSize} schedule entries a run");
        Require(runPositions <= int.MaxValue && (long)a.RunCount * a.Steps <= int.MaxValue, "GPU epoch: the runs' positions or steps pass 2^31");
        shape.BatchRows = Math.Min(a.BatchSize, a.Positions);
        int floats = (int)GpuEpoch.TrainSharedFloats(layout, shape.BatchRows);
        gpuEpochTrain ??= LoadKernel<GpuEpochTrainArgs>(GpuEpoch.TrainKernel);
        if (4 * floats > gpuEpochTrainShared)
        {
            CudaSharedMemory.Allow(gpuEpochTrain.GetKernel(), 4 * floats);
            gpuEpochTrainShared = 4 * floats;
        }
        gpuEpochTrain(new KernelConfig(a.RunCount, Plan.OneGroupThreads, SharedMemoryConfig.RequestDynamic<float>(floats)), new GpuEpochTrainArgs
        {
            Features = a.Features, Labels = a.Labels, Layers = a.Layers, Shape = shape, Parameters = a.Parameters, AdamM = a.AdamM, AdamV = a.AdamV,
            Order = a.Order, SampleLoss = a.SampleLoss, SampleCorrect = a.SampleCorrect, Runs = a.Runs, Schedule = a.Schedule,
            Positions = a.Positions, Steps = a.Steps, BatchSize = a.BatchSize,
        });
    }

    /// <summary>Every run's rows scored (or predicted), in chunks of the plan's rows a group, in one launch.</summary>
    public void ScoreGpuEpoch(in GpuEpochScoreViews a, ParameterLayout layout)
    {
        int chunk = Plan.GpuEpochScoreRows(layout);
        var shape = CheckGpuEpoch(a.Layers, a.Features, a.Parameters, a.RunCount, layout, chunk, "GPU epoch score");
        Require(4 * GpuEpoch.ScoreSharedFloats(layout, chunk) <= Plan.SharedBytesPerGroup,
            $"GPU epoch score: one row's inputs and activations ({4 * GpuEpoch.ScoreSharedFloats(layout, 1)} bytes) do not fit in a group's " +
                $"{Plan.SharedBytesPerGroup} bytes of shared memory");
        Require(a.MaxRows >= 1 && a.Runs.Length >= a.RunCount, "GPU epoch score: at least one row, and a run entry per run");
        Require(a.Order.Length == 0 ? a.MaxRows <= a.Features.Length / layout.Inputs(0) : a.Order.Length >= (long)a.RunCount * a.Positions,
            "GPU epoch score: the rows must be in the features, or the order hold every run's positions");
        Require(a.Order.Length == 0 || a.MaxRows <= a.Positions, "GPU epoch score: a run's rows must fit its positions");
        int positions = a.Order.Length == 0 ? Math.Max(a.Positions, a.MaxRows) : a.Positions; // rows in place: a run's slots hold its rows
        long outputs = (long)a.RunCount * positions;
        Require(a.LossOrProbability.Length >= outputs && (a.Labels.Length == 0 || a.SampleCorrect.Length >= outputs),
            "GPU epoch score: the per-sample outputs must hold every run's rows");
        Require(a.Labels.Length == 0 || a.Labels.Length * layout.Inputs(0) >= a.Features.Length, "GPU epoch score: one label per feature row");
        shape.BatchRows = chunk;
        int chunks = (a.MaxRows + chunk - 1) / chunk;
        Require((long)chunks * a.RunCount <= int.MaxValue, "GPU epoch score: too many groups");
        int floats = (int)GpuEpoch.ScoreSharedFloats(layout, chunk);
        gpuEpochScore ??= LoadKernel<GpuEpochScoreArgs>(GpuEpoch.ScoreKernel);
        if (4 * floats > gpuEpochScoreShared)
        {
            CudaSharedMemory.Allow(gpuEpochScore.GetKernel(), 4 * floats);
            gpuEpochScoreShared = 4 * floats;
        }
        gpuEpochScore(new KernelConfig(chunks * a.RunCount, Plan.OneGroupThreads, SharedMemoryConfig.RequestDynamic<float>(floats)), new GpuEpochScoreArgs
        {
            Features = a.Features, Labels = a.Labels, Layers = a.Layers, Shape = shape, Parameters = a.Parameters, Order = a.Order,
            LossOrProbability = a.LossOrProbability, SampleCorrect = a.SampleCorrect, Runs = a.Runs, Positions = positions,
            ChunksPerRun = chunks,
        });
    }

    private GpuEpochShape CheckGpuEpoch(ArrayView<LayerShape> layers, ArrayView<float> features, ArrayView<float> parameters, int runs, ParameterLayout layout,
        int batchRows, string what)
    {
        Require(Plan.Paths.Contains(TrainingPath.GpuEpoch), $"{what}: this accelerator does not run the GPU epoch");
        Require(runs >= 1, $"{what}: at least one run");
        Require(layers.Length == layout.Layers, $"{what}: the device layer shapes must hold the layout's {layout.Layers} layers");
        Require(layout.Outputs(layout.Layers - 1) == 1 && layout.ActivationOf(layout.Layers - 1) == Activation.Identity,
            $"{what}: the last layer must be one logit (no activation: the loss applies the sigmoid)");
        Require(features.Length % layout.Inputs(0) == 0, $"{what}: features must be (rows, {layout.Inputs(0)})");
        Require(parameters.Length == (long)runs * layout.Count, $"{what}: parameters must be (runs, {layout.Count})");
        Require(GpuEpoch.TrainSharedFloats(layout, batchRows) <= int.MaxValue, $"{what}: a group's activations pass 2^31 floats");
        return new GpuEpochShape
        {
            Layers = layout.Layers, Members = layout.Members, ParameterCount = layout.Count, Stride = GpuEpoch.Stride(layout), Inputs = layout.Inputs(0),
        };
    }
}
