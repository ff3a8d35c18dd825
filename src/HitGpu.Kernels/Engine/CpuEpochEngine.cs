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

    /// <summary>The scratch for batches of up to <paramref name="rows"/> rows (at least four rows a thread, for scoring and prediction).</summary>
    private EpochNetworkViews Views(int rows)
    {
        int threads = device.Plan.OneGroupThreads;
        int needed = Math.Max(1, (rows + threads - 1) / threads);
        if (scratch is null || rowsPerThread < needed)
        {
            scratch?.Dispose();
            rowsPerThread = needed;
            scratch = device.Allocate<float>(threads, checked(2 * rowsPerThread * network.Layout.Members * network.Layout.ActivationWidth));
        }
        return new EpochNetworkViews { Parameters = network.Parameters.View, Layers = network.LayerShapes.View, Scratch = scratch.View, RowsPerThread = rowsPerThread };
    }

    public void TrainEpoch(DeviceDataset data, DeviceBuffer<int> order, int batchSize, ReadOnlySpan<AdamStep> steps, in StepSettings settings,
        int firstStep, Action<int, int>? onBatch)
    {
        if (schedule is null || schedule.Rows < steps.Length)
        {
            schedule?.Dispose();
            schedule = device.Allocate<AdamStep>(steps.Length);
        }
        schedule.CopyFrom(0, steps);
        threadGradients ??= device.Allocate<float>(device.Plan.OneGroupThreads, network.Layout.Count);
        device.TrainCpuEpoch(new EpochTrainViews
        {
            Network = Views(Math.Min(batchSize, data.Rows)),
            Features = data.Features.View, Labels = data.Labels.View, Order = order.View, SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View,
            AdamM = network.AdamM.View, AdamV = network.AdamV.View, ThreadGradients = threadGradients.View, Schedule = schedule.View,
            Rows = data.Rows, BatchSize = batchSize, FirstStep = firstStep, Settings = settings,
        }, network.Layout);
        onBatch?.Invoke(steps.Length, steps.Length);
    }

    public void Score(DeviceDataset data) =>
        device.ScoreCpuEpoch(new EpochScoreViews
        {
            Network = Views(2 * device.Plan.OneGroupThreads),
            Features = data.Features.View, Labels = data.Labels.View, SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View, Rows = data.Rows,
        }, network.Layout);

    public void Predict(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        if (predictions is null || predictions.Rows < rows)
        {
            predictions?.Dispose();
            predictions = device.Allocate<float>(rows);
        }
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
