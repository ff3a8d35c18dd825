// The CPU epoch engine: a network's epoch, scoring and prediction each in one launch of the CPU epoch's
// kernels (CpuEpoch.cs), with the buffers those need beyond the network's own, made on first use and kept
// while big enough.
namespace HitGpu.Kernels;

internal sealed class CpuEpochEngine(Network network) : INetworkEngine
{
    private readonly ComputeDevice device = network.Device;
    private DeviceBuffer<float>? threadGradients;  // (threads, count) one gradient copy per thread
    private DeviceBuffer<float>? scratch;          // (threads, 2 rowsPerThread k width)
    private int rowsPerThread;
    private DeviceBuffer<AdamStep>? schedule;      // (steps) an epoch's Adam steps
    private DeviceBuffer<float>? predictions;      // (rows) P(hit)

    /// <summary>Scratch rows per thread for batches of <paramref name="rows"/> rows over <paramref name="threads"/> threads.</summary>
    public static int RowsPerThread(int rows, int threads) => Math.Max(1, (rows + threads - 1) / threads);

    /// <summary>Floats of scratch for all threads: per thread, outputs then deltas for its rows of k row-members.</summary>
    public static long ScratchFloats(ParameterLayout layout, int rowsPerThread, int threads) =>
        (long)threads * 2 * rowsPerThread * layout.Members * layout.ActivationWidth;

    /// <summary>The scratch for batches of up to <paramref name="rows"/> rows (scoring and prediction ask for 2 threads' worth: four rows a thread).</summary>
    private EpochNetworkViews Views(int rows)
    {
        int threads = device.Plan.OneGroupThreads;
        int needed = RowsPerThread(rows, threads);
        if (scratch is null || rowsPerThread < needed)
        {
            // The new buffer first: should it fail, the old one is still whole and in use.
            var larger = device.Allocate<float>(threads, checked((int)(ScratchFloats(network.Layout, needed, threads) / threads)));
            scratch?.Dispose();
            (scratch, rowsPerThread) = (larger, needed);
        }
        return new EpochNetworkViews { Parameters = network.Parameters.View, Layers = network.LayerShapes.View, Scratch = scratch.View,
            RowsPerThread = rowsPerThread };
    }

    public void TrainEpoch(DeviceDataset data, DeviceBuffer<int> order, int batchSize, ReadOnlySpan<AdamStep> steps, in StepSettings settings,
        int firstStep, Action<int, int>? onBatch)
    {
        DeviceBuffer<AdamStep>.AtLeast(device, ref schedule, steps.Length).CopyFrom(0, steps);
        threadGradients ??= device.Allocate<float>(device.Plan.OneGroupThreads, network.Layout.Count);
        device.TrainCpuEpoch(new EpochTrainViews
        {
            Network = Views(Math.Min(batchSize, data.Rows)),
            Features = data.Features.View, Labels = data.Labels.View, Order = order.View, SampleLoss = data.SampleLoss.View,
                SampleCorrect = data.SampleCorrect.View,
            AdamM = network.AdamM.View, AdamV = network.AdamV.View, ThreadGradients = threadGradients.View, Schedule = schedule.View,
            Rows = data.Rows, BatchSize = batchSize, FirstStep = firstStep, Settings = settings,
        }, network.Layout);
        onBatch?.Invoke(steps.Length, steps.Length);
    }

    public void Score(DeviceDataset data) =>
        device.ScoreCpuEpoch(new EpochScoreViews
        {
            Network = Views(2 * device.Plan.OneGroupThreads),
            Features = data.Features.View, Labels = data.Labels.View, SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View,
                Rows = data.Rows,
        }, network.Layout);

    public void Predict(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        DeviceBuffer<float>.AtLeast(device, ref predictions, rows);
        device.PredictCpuEpoch(new EpochPredictViews
        {
            Network = Views(2 * device.Plan.OneGroupThreads), Features = features.View, Probabilities = predictions.View, Rows = rows,
        }, network.Layout);
        predictions.CopyTo(0, result[..rows]);
    }

    public void Dispose()
    {
        threadGradients?.Dispose();
        scratch?.Dispose();
        schedule?.Dispose();
        predictions?.Dispose();
    }
}
