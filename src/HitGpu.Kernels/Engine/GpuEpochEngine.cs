// The GPU epoch engine: one network's epoch in one launch of one group (GpuEpoch.cs), its scoring and
// prediction in one launch each, with the small buffers those need beyond the network's own.
namespace HitGpu.Kernels;

internal sealed class GpuEpochEngine(Network network) : INetworkEngine
{
    private readonly ComputeDevice device = network.Device;
    private readonly DeviceBuffer<EpochRun> run = network.Device.Allocate<EpochRun>(1);
    private DeviceBuffer<AdamStep>? schedule;     // (steps) an epoch's Adam steps
    private DeviceBuffer<float>? predictions;     // (rows) P(hit)

    public void TrainEpoch(DeviceDataset data, DeviceBuffer<int> order, int batchSize, ReadOnlySpan<AdamStep> steps, in StepSettings settings,
        int firstStep, Action<int, int>? onBatch)
    {
        DeviceBuffer<AdamStep>.AtLeast(device, ref schedule, steps.Length).CopyFrom(0, steps);
        run.CopyFrom([new EpochRun { Rows = data.Rows, FirstStep = firstStep, Settings = settings }]);
        device.TrainGpuEpoch(new GpuEpochTrainViews
        {
            Features = data.Features.View, Labels = data.Labels.View, Layers = network.LayerShapes.View,
            Parameters = network.Parameters.View, AdamM = network.AdamM.View, AdamV = network.AdamV.View,
            Order = order.View, SampleLoss = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View, Runs = run.View, Schedule = schedule.View,
            RunCount = 1, Positions = data.Rows, Steps = steps.Length, BatchSize = batchSize,
        }, network.Layout);
        onBatch?.Invoke(steps.Length, steps.Length);
    }

    public void Score(DeviceDataset data)
    {
        run.CopyFrom([new EpochRun { Rows = data.Rows }]);
        device.ScoreGpuEpoch(new GpuEpochScoreViews
        {
            Features = data.Features.View, Labels = data.Labels.View, Layers = network.LayerShapes.View, Parameters = network.Parameters.View,
            LossOrProbability = data.SampleLoss.View, SampleCorrect = data.SampleCorrect.View, Runs = run.View, RunCount = 1, Positions = data.Rows,
                MaxRows = data.Rows,
        }, network.Layout);
    }

    public void Predict(DeviceBuffer<float> features, int rows, Span<float> result)
    {
        DeviceBuffer<float>.AtLeast(device, ref predictions, rows);
        run.CopyFrom([new EpochRun { Rows = rows }]);
        device.ScoreGpuEpoch(new GpuEpochScoreViews
        {
            Features = features.View, Layers = network.LayerShapes.View, Parameters = network.Parameters.View,
            LossOrProbability = predictions.View, Runs = run.View, RunCount = 1, Positions = rows, MaxRows = rows,
        }, network.Layout);
        predictions.CopyTo(0, result[..rows]);
    }

    public void Dispose()
    {
        run.Dispose();
        schedule?.Dispose();
        predictions?.Dispose();
    }
}
