// One training step (forward, loss, backward, Adam) at several batch sizes, on each path, and the full
// default run: 20 epochs of the 90s file.
using BenchmarkDotNet.Attributes;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Bench;

[Config(typeof(BenchConfig))]
public class TrainingBenchmarks
{
    private ComputeDevice device = null!;
    private Network network = null!;
    private DeviceBuffer<float> features = null!, labels = null!, sampleLoss = null!, sampleCorrect = null!, schedule = null!;
    private DeviceBuffer<int> order = null!;
    private int step;

    [ParamsSource(typeof(BenchConfig), nameof(BenchConfig.Accelerators))]
    public string Accelerator { get; set; } = "cpu";

    [Params(32, 256, 4096, 65536)]
    public int Batch { get; set; }

    [Params(TrainingPath.FusedEpoch, TrainingPath.Layered)]
    public TrainingPath Path { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        device = ComputeDevice.Open(ComputeDevice.ParseKind(Accelerator));
        // Standardised-looking random songs: the speed of a step does not depend on the values.
        var rng = new Random(3);
        var x = Enumerable.Range(0, Batch * SongData.FeatureCount).Select(_ => rng.NextSingle() * 4 - 2).ToArray();
        var y = Enumerable.Range(0, Batch).Select(_ => (float)rng.Next(2)).ToArray();
        features = device.Upload<float>(x, Batch, SongData.FeatureCount);
        labels = device.Upload<float>(y, Batch);
        order = device.Upload<int>(Enumerable.Range(0, Batch).ToArray(), Batch);
        sampleLoss = device.Allocate<float>(Batch);
        sampleCorrect = device.Allocate<float>(Batch);
        schedule = device.Allocate<float>(1, 3);
        var layout = ParameterLayout.ForClassifier(SongData.FeatureCount, [64, 32]);
        network = new Network(device, layout, Batch, layout.Initialize(0));
        TrainingStep();
        if (!sampleLoss.ToArray().All(float.IsFinite))
            throw new InvalidOperationException("a training step produced a loss that is not finite");
    }

    [Benchmark]
    public void TrainingStep()
    {
        var s = AdamStep.At(++step, 1e-3f);
        if (Path == TrainingPath.FusedEpoch)
        {
            // An epoch of exactly one batch: one launch, as each step of a real epoch but with the launch unshared.
            schedule.CopyFrom([s.LearningRate, s.BiasCorrection1, s.BiasCorrection2]);
            network.TrainEpochFused(features, labels, order, Batch, schedule, sampleLoss, sampleCorrect);
        }
        else
        {
            var input = network.Input(features, 0, order);
            network.Forward(input, Batch);
            device.BinaryCrossEntropy(new LossArgs
            {
                Logits = network.Logits.View, Labels = RowSource.Gather(labels.View, 1, order.View, 0),
                LogitGradient = network.LogitGradient.View, SampleLoss = sampleLoss.View, SampleCorrect = sampleCorrect.View,
                Rows = Batch, GradientScale = 1f / Batch,
            });
            network.Backward(input, Batch);
            network.Update(s);
        }
        device.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        network.Dispose();
        foreach (var buffer in new[] { features, labels, sampleLoss, sampleCorrect, schedule })
            buffer.Dispose();
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

    /// <summary>The study setup (hitgpu train --study): 20 epochs, batch 32, one network, on the 90s file, with per-epoch validation and the final test.</summary>
    [Benchmark]
    public double TwentyEpochs90s() => Trainer.Train(device, songs, TrainingOptions.Study).TestAccuracy;

    [GlobalCleanup]
    public void Cleanup() => device.Dispose();
}
