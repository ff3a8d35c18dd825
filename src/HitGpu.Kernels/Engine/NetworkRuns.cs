// Many networks of one layout, a run each, on the GPU epoch (Trainer.TrainMany): every run's parameters and
// Adam moments side by side in (runs, count) buffers, an epoch of all runs in one launch (a group a run) and
// a scoring of all in one. Beside Network, which is one run's state; RunRows holds many runs' rows.
namespace HitGpu.Kernels;

/// <summary>
/// Many runs' rows on the device: run r's block of <see cref="Counts"/>[r] rows in one feature matrix, an order
/// over them (run r's at r x <see cref="Positions"/>; in place until an epoch writes its own), and a loss (or
/// P(hit)) and a correctness slot a position.
/// </summary>
public sealed class RunRows : IDisposable
{
    public int Runs => Counts.Length;
    public int Positions { get; }                           // the most rows any run has
    public int[] Counts { get; }                            // (runs) each run's rows
    public int[] Bases { get; }                             // (runs) where each run's block starts in Features
    public DeviceBuffer<float> Features { get; }            // (all runs' rows, width)
    public DeviceBuffer<float>? Labels { get; }             // (all runs' rows); none: rows to predict
    public DeviceBuffer<int> Order { get; }                 // (runs, Positions) feature rows
    public DeviceBuffer<float> LossOrProbability { get; }   // (runs, Positions)
    public DeviceBuffer<float> SampleCorrect { get; }       // (runs, Positions)

    /// <param name="inputs">each run's (rows, width) row-major network inputs</param>
    /// <param name="labels">each run's labels, as many as its rows; none: rows to predict</param>
    public RunRows(ComputeDevice device, IReadOnlyList<float[]> inputs, int width, IReadOnlyList<float[]>? labels = null)
    {
        Counts = inputs.Select(i => i.Length / width).ToArray();
        Positions = Counts.Max();
        int rows = 0;
        Bases = Counts.Select(count => (rows += count) - count).ToArray();
        Features = device.Upload<float>(inputs.SelectMany(i => i).ToArray(), rows, width);
        Labels = labels is null ? null : device.Upload<float>(labels.SelectMany(l => l).ToArray(), rows);
        // Past its count a run's order repeats its last row: read by no kernel (a run's entry says how many it has).
        Order = device.Upload<int>(Enumerable.Range(0, Runs).SelectMany(r => Enumerable.Range(Bases[r], Positions)
            .Select(i => Math.Min(i, Bases[r] + Counts[r] - 1))).ToArray(), Runs * Positions);
        LossOrProbability = device.Allocate<float>(Runs, Positions);
        SampleCorrect = device.Allocate<float>(Runs, Positions);
    }

    /// <summary>Device memory <see cref="RunRows"/> of this size takes, before it is made.</summary>
    public static long DeviceBytes(long rows, int width, int runs, int positions) => 4L * (rows * (width + 1) + 3L * runs * positions);

    public void Dispose()
    {
        Features.Dispose();
        Labels?.Dispose();
        Order.Dispose();
        LossOrProbability.Dispose();
        SampleCorrect.Dispose();
    }
}

/// <summary>
/// Many networks of one layout on the device, one a run: their parameters and Adam's two moments, (runs, count)
/// each, and the small buffers a launch for all of them reads. Each run gets the arithmetic a Network on the GPU
/// epoch gives it alone (tests/HitGpu.Nn.Tests/TrainingTests holds that to the bit).
/// </summary>
public sealed class NetworkRuns : IDisposable
{
    private readonly ComputeDevice device;
    private readonly DeviceBuffer<LayerShape> shapes;
    private readonly DeviceBuffer<float> parameters, adamM, adamV; // (runs, count)
    private readonly DeviceBuffer<EpochRun> jobs;                  // (runs) what a launch does for each
    private readonly DeviceBuffer<AdamStep> schedule;              // (runs, steps)
    private readonly DeviceBuffer<float> sums;                     // (2 runs) metric sums on the device

    public ParameterLayout Layout { get; }
    public int Runs { get; }

    /// <summary>Runs of this layout, each training at most <paramref name="steps"/> Adam steps an epoch.</summary>
    public NetworkRuns(ComputeDevice device, ParameterLayout layout, int runs, int steps)
    {
        this.device = device;
        Layout = layout;
        Runs = runs;
        shapes = device.Upload<LayerShape>(layout.Shapes, layout.Layers);
        parameters = device.Allocate<float>(runs, layout.Count);
        adamM = device.Allocate<float>(runs, layout.Count);
        adamV = device.Allocate<float>(runs, layout.Count);
        jobs = device.Allocate<EpochRun>(runs);
        schedule = device.Allocate<AdamStep>(runs, steps);
        sums = device.Allocate<float>(2 * runs);
    }

    /// <summary>Device memory <see cref="NetworkRuns"/> of this size takes, before it is made (the rows are <see cref="RunRows.DeviceBytes"/>).</summary>
    public static unsafe long DeviceBytes(ParameterLayout layout, int runs, int steps) =>
        4L * (3L * runs * layout.Count + 2L * runs) + runs * (sizeof(EpochRun) + (long)steps * sizeof(AdamStep));

    /// <summary>Every run's parameters (run r's at r x count), and Adam's moments back to zero.</summary>
    public void Reset(float[] all)
    {
        parameters.CopyFrom(all);
        adamM.Clear();
        adamV.Clear();
    }

    /// <summary>Run <paramref name="run"/>'s parameters, read back.</summary>
    public float[] ParametersOf(int run)
    {
        var weights = new float[Layout.Count];
        parameters.CopyTo(run * Layout.Count, weights);
        return weights;
    }

    /// <summary>
    /// One epoch of every run whose job has rows, in <paramref name="rows"/>' feature rows: each run's order
    /// (run r's at r x Positions, indices of rows' Features) and steps (run r's at r x steps) uploaded in one copy
    /// each. Each run's mean loss and accuracy over its epoch (zero for a run with no rows).
    /// </summary>
    public (double Loss, double Accuracy)[] TrainEpoch(RunRows rows, int[] order, AdamStep[] steps, EpochRun[] runJobs, int batchSize)
    {
        rows.Order.CopyFrom(order);
        schedule.CopyFrom(steps);
        jobs.CopyFrom(runJobs);
        device.TrainGpuEpoch(new GpuEpochTrainViews
        {
            Features = rows.Features.View, Labels = rows.Labels!.View, Layers = shapes.View, Parameters = parameters.View, AdamM = adamM.View,
            AdamV = adamV.View, Order = rows.Order.View, SampleLoss = rows.LossOrProbability.View, SampleCorrect = rows.SampleCorrect.View,
            Runs = jobs.View, Schedule = schedule.View, RunCount = Runs, Positions = rows.Positions, Steps = schedule.Cols, BatchSize = batchSize,
        }, Layout);
        return DeviceDataset.ReadRunMetrics(device, rows.LossOrProbability, rows.SampleCorrect, jobs, runJobs.Select(job => job.Rows).ToArray(),
            rows.Positions, sums);
    }

    /// <summary>
    /// Scores the runs of <paramref name="which"/> on their labelled rows in one launch: each one's mean loss and
    /// accuracy (zero for the others), its per-row correctness left in rows' slots.
    /// </summary>
    public (double Loss, double Accuracy)[] Score(RunRows rows, bool[] which)
    {
        var counts = rows.Counts.Select((count, r) => which[r] ? count : 0).ToArray();
        Launch(rows, counts);
        return DeviceDataset.ReadRunMetrics(device, rows.LossOrProbability, rows.SampleCorrect, jobs, counts, rows.Positions, sums);
    }

    /// <summary>Every run's P(hit) of its rows, in one launch: run r's at r x Positions, its first Counts[r].</summary>
    public float[] Predict(RunRows rows)
    {
        Launch(rows, rows.Counts);
        return rows.LossOrProbability.ToArray();
    }

    private void Launch(RunRows rows, int[] counts)
    {
        jobs.CopyFrom(counts.Select(count => new EpochRun { Rows = count }).ToArray());
        device.ScoreGpuEpoch(new GpuEpochScoreViews
        {
            Features = rows.Features.View, Labels = rows.Labels?.View ?? default, Layers = shapes.View, Parameters = parameters.View,
            Order = rows.Order.View, LossOrProbability = rows.LossOrProbability.View, SampleCorrect = rows.Labels is null ? default : rows.SampleCorrect.View,
            Runs = jobs.View, RunCount = Runs, Positions = rows.Positions, MaxRows = rows.Positions,
        }, Layout);
    }

    public void Dispose()
    {
        shapes.Dispose();
        parameters.Dispose();
        adamM.Dispose();
        adamV.Dispose();
        jobs.Dispose();
        schedule.Dispose();
        sums.Dispose();
    }
}
