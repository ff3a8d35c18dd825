// Goldens from an independent implementation (llm.c's test_gpt2.c habit): HitGpu's training trajectory held to
// PyTorch's. PyTorch (bench/reference/torch_golden.py, float64, the formulas written from scratch) was fed
// HitGpu's initial weights, the training rows as the network sees them and HitGpu's batch order, and recorded
// the loss of every step before its update; the files in Fixtures/golden/ are its output. HitGpu trains the same
// run here, on every path the accelerator has, and its per-step losses (the mean of the batch's sample slots)
// must agree to 1e-4: float32 against float64, the same steps.
//
// To make the files again (after a change that is meant to move the trajectory): HITGPU_GOLDEN_RUNS names a
// folder the test writes each run's inputs into (before it checks), then PyTorch trains them:
//   HITGPU_GOLDEN_RUNS=/tmp dotnet test tests/HitGpu.Nn.Tests --filter "FullyQualifiedName~GoldenTests"
//   for run in study batch-ensemble; do
//     python3 bench/reference/torch_golden.py /tmp/hitgpu-golden-$run.json tests/HitGpu.Nn.Tests/Fixtures/golden/$run.torch.json
//   done
using System.Text.Json;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class GoldenTests(AcceleratorFixture fixture)
{
    /// <summary>One run both implementations take: a network, its seed's initial weights, batches of the 90s training rows in a seeded order.</summary>
    public sealed record GoldenRun(string Name, ParameterLayout Layout, int Epochs, float LabelSmoothing);

    private static readonly GoldenRun[] Runs =
    [
        // The study network (15-64-32-1, ReLU, Adam 1e-3, batch 32), no dropout.
        new("study", ParameterLayout.ForClassifier(SongData.FeatureCount, [64, 32]), Epochs: 2, LabelSmoothing: 0f),
        // A batch ensemble with adapters: shared hidden W, per-member r, s, biases and heads; label smoothing.
        new("batch-ensemble", ParameterLayout.ForClassifier(SongData.FeatureCount, [16, 8], EnsembleKind.Batch, 4), Epochs: 2, LabelSmoothing: 0.1f),
    ];

    private const int BatchSize = 32, Seed = 0;
    private const float LearningRate = 1e-3f;

    /// <summary>The training rows as the network sees them (the study's split and standardisation, as training makes them) and their labels.</summary>
    private static (float[] Inputs, float[] Labels) TrainingRows()
    {
        var songs = SongData.LoadEmbedded90s();
        var split = Split.Stratified(songs.Labels!, Seed);
        var preprocessing = Preprocessing.Fit(songs.Features, FeatureEncoding.Raw, InputTransform.Standard, split.Train);
        return (preprocessing.Apply(songs.Features, split.Train), split.Train.Select(r => songs.Labels![r]).ToArray());
    }

    /// <summary>Each epoch's batch order as the trainer's host shuffle makes it (<see cref="EpochPlan"/>, the one statement of the rule).</summary>
    private static int[][] Orders(int rows, int epochs)
    {
        var plan = new EpochPlan(TrainingOptions.Study with { Seed = Seed, BatchSize = BatchSize, Epochs = epochs }, rows, permutes: false);
        return Enumerable.Range(1, epochs).Select(epoch =>
        {
            var order = new int[rows];
            plan.HostOrder(epoch, order);
            return order;
        }).ToArray();
    }

    /// <summary>HitGpu's loss of every step (before its update) on <paramref name="path"/>.</summary>
    private double[] StepLosses(GoldenRun run, TrainingPath path)
    {
        var device = fixture.Device;
        var (inputs, labels) = TrainingRows();
        var settings = StepSettings.Default with { LabelSmoothing = run.LabelSmoothing };
        using var data = new DeviceDataset(device, inputs, SongData.FeatureCount, labels);
        using var network = new Network(device, run.Layout, BatchSize, path);
        network.Reset(run.Layout.Initialize(Seed));
        using var order = device.Allocate<int>(labels.Length);
        int steps = (labels.Length + BatchSize - 1) / BatchSize;
        var losses = new List<double>();
        foreach (var (epochOrder, epoch) in Orders(labels.Length, run.Epochs).Select((o, e) => (o, e)))
        {
            order.CopyFrom(epochOrder);
            var schedule = Enumerable.Range(0, steps).Select(k => AdamStep.At(epoch * steps + k + 1, LearningRate, settings)).ToArray();
            network.TrainEpoch(data, order, BatchSize, schedule, settings, firstStep: epoch * steps);
            var sampleLoss = data.SampleLoss.ToArray();
            for (int start = 0; start < labels.Length; start += BatchSize)
                losses.Add(sampleLoss.Skip(start).Take(Math.Min(BatchSize, labels.Length - start)).Average(v => (double)v));
        }
        return [.. losses];
    }

    public static TheoryData<string, TrainingPath> Cases()
    {
        var data = new TheoryData<string, TrainingPath>();
        foreach (var run in Runs)
            foreach (var path in AcceleratorFixture.Plan.Paths)
                data.Add(run.Name, path);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Training_follows_the_PyTorch_trajectory_step_by_step(string name, TrainingPath path)
    {
        var run = Runs.Single(r => r.Name == name);
        if (Environment.GetEnvironmentVariable("HITGPU_GOLDEN_RUNS") is { Length: > 0 } folder)
            WriteRun(run, folder);
        using var file = File.OpenRead(Path.Combine(AppContext.BaseDirectory, "Fixtures", "golden", $"{name}.torch.json"));
        var expected = JsonDocument.Parse(file).RootElement.GetProperty("step_losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var actual = StepLosses(run, path);
        Assert.Equal(expected.Length, actual.Length);
        for (int step = 0; step < expected.Length; step++)
            Tolerance.Close(expected[step], actual[step], $"{name}, {path}: loss of step {step + 1}", 1e-4, 0);
        // The trajectory moves: a golden that a frozen network would also match proves nothing.
        Assert.True(expected[^1] < expected[0] - 0.1, $"the recorded loss fell only from {expected[0]} to {expected[^1]}");
    }

    /// <summary>What torch_golden.py reads: the tensors and their places, the initial weights, the rows, the orders, Adam's settings.</summary>
    private static void WriteRun(GoldenRun run, string folder)
    {
        var (inputs, labels) = TrainingRows();
        var settings = StepSettings.Default;
        var layout = run.Layout;
        var description = new
        {
            name = run.Name,
            inputs = layout.Inputs(0),
            members = layout.Members,
            layers = Enumerable.Range(0, layout.Layers).Select(l => new
            {
                activation = layout.ActivationOf(l).ToString(),
                groups = layout[l].Groups,
                tensors = layout.Tensors(l).Select(t => new { name = t.Name, shape = t.Shape, offset = t.Offset }),
            }),
            initial = layout.Initialize(Seed),
            features = inputs,
            labels,
            orders = Orders(labels.Length, run.Epochs),
            batchSize = BatchSize,
            learningRate = (double)LearningRate,
            beta1 = (double)settings.Beta1,
            beta2 = (double)settings.Beta2,
            epsilon = (double)settings.Epsilon,
            labelSmoothing = (double)run.LabelSmoothing,
        };
        File.WriteAllText(Path.Combine(folder, $"hitgpu-golden-{run.Name}.json"), JsonSerializer.Serialize(description));
    }
}
