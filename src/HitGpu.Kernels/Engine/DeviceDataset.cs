// One part of the data on the device (training, validation, test rows): uploaded once, read by every epoch.
namespace HitGpu.Kernels;

/// <summary>
/// One part of the data on the device: the network's inputs, labels, and one loss and one correctness slot
/// per sample, which the kernels fill and <see cref="ReadMetrics()"/> sums.
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
    /// Mean loss and accuracy from the per-sample slots: summed on the device where the plan says so (two
    /// numbers cross), else on the host in double, in a fixed order (the CPU accelerator's memory is the host's).
    /// </summary>
    public (double Loss, double Accuracy) ReadMetrics() => ReadMetrics(device, SampleLoss, SampleCorrect, 0, Rows, sums);

    /// <summary>
    /// <see cref="ReadMetrics()"/> of the slots [start, start + rows) of any per-sample buffers (many runs' slots
    /// side by side), <paramref name="sums"/> (2) the device's room for the two sums.
    /// </summary>
    public static (double Loss, double Accuracy) ReadMetrics(ComputeDevice device, DeviceBuffer<float> sampleLoss, DeviceBuffer<float> sampleCorrect,
        int start, int rows,
        DeviceBuffer<float> sums)
    {
        if (device.Plan.SumsMetricsOnDevice)
        {
            device.SumSamples(sampleLoss.Slice(start, rows), sampleCorrect.Slice(start, rows), rows, sums.View);
            var total = sums.ToArray();
            return ((double)total[0] / rows, (double)total[1] / rows);
        }
        var loss = new float[rows];
        var correct = new float[rows];
        sampleLoss.CopyTo(start, loss);
        sampleCorrect.CopyTo(start, correct);
        double lossSum = 0, correctSum = 0;
        for (int i = 0; i < loss.Length; i++)
        {
            lossSum += loss[i];
            correctSum += correct[i];
        }
        return (lossSum / loss.Length, correctSum / loss.Length);
    }

    /// <summary>
    /// <see cref="ReadMetrics()"/> of many runs' slots side by side (run r's first rows[r] at r
    /// <paramref name="stride"/>; runs whose entry in <paramref name="runs"/> has no rows are left at zero): on the
    /// device one launch and one read for all (<see cref="ComputeDevice.SumRunSamples"/>, each run's sums the bits
    /// of its own ReadMetrics), else per run on the host. <paramref name="sums"/>: room for two sums a run.
    /// </summary>
    public static (double Loss, double Accuracy)[] ReadRunMetrics(ComputeDevice device, DeviceBuffer<float> sampleLoss, DeviceBuffer<float> sampleCorrect,
        DeviceBuffer<EpochRun> runs, IReadOnlyList<int> rows, int stride, DeviceBuffer<float> sums)
    {
        var metrics = new (double, double)[rows.Count];
        if (!device.Plan.SumsMetricsOnDevice)
        {
            for (int r = 0; r < rows.Count; r++)
                if (rows[r] > 0)
                    metrics[r] = ReadMetrics(device, sampleLoss, sampleCorrect, r * stride, rows[r], sums);
            return metrics;
        }
        device.SumRunSamples(sampleLoss.View, sampleCorrect.View, runs.View, rows.Count, stride, sums.View);
        var total = sums.ToArray();
        for (int r = 0; r < rows.Count; r++)
            if (rows[r] > 0)
                metrics[r] = ((double)total[2 * r] / rows[r], (double)total[2 * r + 1] / rows[r]);
        return metrics;
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
