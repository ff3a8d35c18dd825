// What an engine does for a network: train an epoch, score, predict. The plan picks one per network
// (DevicePlan.EngineFor); Network holds it, so no method branches on the path.
namespace HitGpu.Kernels;

internal interface INetworkEngine : IDisposable
{
    /// <summary>One epoch over <paramref name="data"/> in <paramref name="order"/> (checked by <see cref="Network.TrainEpoch"/>).</summary>
    void TrainEpoch(DeviceDataset data, DeviceBuffer<int> order, int batchSize, ReadOnlySpan<AdamStep> schedule, in StepSettings settings,
        int firstStep, Action<int, int>? onBatch);

    /// <summary>Each row's loss (of the members' mean probability) and correctness into the data's sample slots, no dropout.</summary>
    void Score(DeviceDataset data);

    /// <summary>P(hit) of the first <paramref name="rows"/> rows of (n, inputs) features into <paramref name="result"/>.</summary>
    void Predict(DeviceBuffer<float> features, int rows, Span<float> result);
}
