// One training step (forward, loss, backward, Adam) at several batch sizes, on each path, and the study's
// whole run: 20 epochs of the 90s file.
using BenchmarkDotNet.Attributes;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Bench;

[Config(typeof(BenchConfig))]
public class TrainingBenchmarks
{
    private ComputeDevice device = null!;
    private Network network = null!;
    private DeviceDataset data = null!;
    private DeviceBuffer<int> order = null!;
    private readonly AdamStep[] schedule = new AdamStep[1];
    private int step;

    [ParamsSource(typeof(BenchConfig), nameof(BenchConfig.Accelerators))]
    public string Accelerator { get; set; } = "cpu";

    [Params(32, 256, 4096, 65536)]
    public int Batch { get; set; }

    [Params(TrainingPath.CpuEpoch, TrainingPath.Layered)]
    public TrainingPath Path { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        device = ComputeDevice.Open(ComputeDevice.ParseKind(Accelerator));
        // Standardised-looking random songs: the speed of a step does not depend on the values.
        var rng = new Random(3);
        var x = Enumerable.Range(0, Batch * SongData.FeatureCount).Select(_ => rng.NextSingle() * 4 - 2).ToArray();
        var y = Enumerable.Range(0, Batch).Select(_ => (float)rng.Next(2)).ToArray();
        data = new DeviceDataset(device, x, SongData.FeatureCount, y);
        order = device.Upload<int>(Enumerable.Range(0, Batch).ToArray(), Batch);
        var layout = ParameterLayout.ForClassifier(SongData.FeatureCount, [64, 32]);
        network = new Network(device, layout, Batch, Path);
        network.Reset(layout.Initialize(0));
        TrainingStep();
        if (!data.SampleLoss.ToArray().All(float.IsFinite))
            throw new InvalidOperationException("a training step produced a loss that is not finite");
    }

    /// <summary>
    /// An epoch of exactly one batch: one step. On the CPU epoch path that is one launch, as each step of a
    /// real epoch but with the launch unshared.
    /// </summary>
    [Benchmark]
    public void TrainingStep()
    {
        schedule[0] = AdamStep.At(++step, 1e-3f);
        network.TrainEpoch(data, order, Batch, schedule, StepSettings.Default, step - 1);
        device.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        network.Dispose();
        data.Dispose();
        order.Dispose();
        device.Dispose();
    }
}

[Config(typeof(BenchConfig))]
[WarmupCount(1), IterationCount(5)]
public class FullRunBenchmarks
{
    private ComputeDevice device = null!;
    private readonly SongTable songs = SongData.LoadEmbedded90s();

    [ParamsSource(typeof(BenchConfig), nameof(BenchConfig.Accelerators))]
    public string Accelerator { get; set; } = "cpu";

    [GlobalSetup]
    public void Setup() => device = ComputeDevice.Open(ComputeDevice.ParseKind(Accelerator));

    /// <summary>The study setup (hitgpu train --study): 20 epochs, batch 32, one network, on the 90s file, with per-epoch validation and the final
    /// test.</summary>
    [Benchmark]
    public double TwentyEpochs90s() => Trainer.Train(device, songs, TrainingOptions.Study).TestAccuracy;

    [GlobalCleanup]
    public void Cleanup() => device.Dispose();
}
