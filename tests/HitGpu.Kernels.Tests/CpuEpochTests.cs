// The one-launch CPU epoch against its reference (NetworkReference.Step and Adam per batch), scoring and
// prediction against the reference forward; and the dropout kernel against its reference.
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class CpuEpochTests(AcceleratorFixture fixture)
{
    private readonly ComputeDevice device = fixture.Device;

    public static TheoryData<int[], int, int, float, EnsembleKind, int> Cases()
    {
        var data = new TheoryData<int[], int, int, float, EnsembleKind, int>();
        {
            data.Add([15, 64, 32, 1], 100, 32, 0f, EnsembleKind.Independent, 1);
            data.Add([15, 64, 32, 1], 100, 32, 0.3f, EnsembleKind.Independent, 1); // dropout on both hidden layers
            data.Add([5, 9, 3, 1], 65, 7, 0f, EnsembleKind.Independent, 1);   // odd widths, a partial last batch
            data.Add([4, 1], 13, 1, 0.5f, EnsembleKind.Independent, 1);       // logistic regression (no hidden layer to drop), batch of one
            data.Add([15, 16, 1], 40, 64, 0.2f, EnsembleKind.Independent, 1); // one batch larger than the data
            // Members: each kind, with dropout (a mask per row-member) and odd sizes.
            data.Add([15, 16, 8, 1], 70, 16, 0.2f, EnsembleKind.Independent, 3);
            data.Add([15, 16, 8, 1], 70, 16, 0.2f, EnsembleKind.Batch, 4);
            data.Add([5, 9, 3, 1], 33, 5, 0f, EnsembleKind.Batch, 2);
            data.Add([15, 16, 8, 1], 70, 16, 0.2f, EnsembleKind.Mini, 5);
            data.Add([4, 1], 13, 3, 0f, EnsembleKind.Batch, 3);   // one layer: only the per-member head
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Epoch_matches_the_reference_step_by_step(int[] widths, int rows, int batchSize, float dropout, EnsembleKind kind, int members) =>
        EpochMatchesTheReference(new ParameterLayout(widths, null, kind, members), rows, batchSize, dropout);

    /// <summary>The ensembles the embedding cases train (shared with the GPU epoch's tests).</summary>
    public static TheoryData<EnsembleKind, int> PerFeatureEmbeddingEnsembles() =>
        new() { { EnsembleKind.Independent, 1 }, { EnsembleKind.Batch, 3 }, { EnsembleKind.Mini, 4 }, { EnsembleKind.Independent, 2 } };

    public static TheoryData<EnsembleKind, int> PeriodicEmbeddingEnsembles() =>
        new() { { EnsembleKind.Independent, 1 }, { EnsembleKind.Batch, 3 }, { EnsembleKind.Independent, 2 } };

    [Theory]
    [MemberData(nameof(PerFeatureEmbeddingEnsembles))]
    public void Epoch_with_a_per_feature_embedding_matches_the_reference(EnsembleKind kind, int members)
    {
        // 5 features of 1 + 6 inputs each (a scalar and its piecewise encoding) to 4 dimensions each, then 9-1.
        var layout = ParameterLayout.WithEmbedding(5, 7, 4, [9], kind, members);
        EpochMatchesTheReference(layout, 50, 8, 0.2f);
    }

    [Theory]
    [MemberData(nameof(PeriodicEmbeddingEnsembles))]
    public void Epoch_with_a_periodic_embedding_matches_the_reference(EnsembleKind kind, int members)
    {
        // 5 features, 3 frequencies each (cosines keep their pre-activations for the slope), 4 dimensions each, then 9-1.
        var layout = ParameterLayout.WithPeriodicEmbedding(5, 3, 4, [9], kind, members);
        EpochMatchesTheReference(layout, 50, 8, 0.2f);
    }

    private void EpochMatchesTheReference(ParameterLayout layout, int rows, int batchSize, float dropout)
    {
        fixture.RequireCpuEpoch();
        int[] widths = [.. layout.Widths];
        var rng = new Random(rows * 31 + batchSize);
        var features = Tolerance.Random(rng, rows * widths[0], 2f);
        var labels = Enumerable.Range(0, rows).Select(_ => (float)rng.Next(2)).ToArray();
        var order = Enumerable.Range(0, rows).OrderBy(_ => rng.Next()).ToArray();
        var parameters = Tolerance.Random(rng, layout.Count, 0.5f);
        var settings = StepSettings.Default with { WeightDecay = 0.01f, DropoutRate = dropout, DropoutSeed = 77, LabelSmoothing = dropout > 0.25f ? 0.1f : 0f };
        int steps = (rows + batchSize - 1) / batchSize;
        // A decaying rate: the schedule is read per step.
        var schedule = Enumerable.Range(1, steps).Select(t => AdamStep.At(t, 0.01f / t, settings)).ToArray();

        var expected = (float[])parameters.Clone();
        var m = new float[layout.Count];
        var v = new float[layout.Count];
        var expectedLoss = new float[rows];
        var expectedCorrect = new float[rows];
        CpuEpoch.TrainReference(layout, features, labels, order, batchSize, schedule, expected, m, v, expectedLoss, expectedCorrect, settings, firstStep: 5);

        using var buffers = Upload(layout, features, labels, order, parameters, Math.Min(batchSize, rows));
        {
            using var scheduleOnDevice = device.Upload<AdamStep>(schedule, steps);
            device.TrainCpuEpoch(new EpochTrainViews
            {
                Network = buffers.Network, Features = buffers.Features.View, Labels = buffers.Labels.View, Order = buffers.Order.View,
                SampleLoss = buffers.Loss.View, SampleCorrect = buffers.Correct.View, AdamM = buffers.M.View, AdamV = buffers.V.View,
                ThreadGradients = buffers.Gradients.View, Schedule = scheduleOnDevice.View, Rows = rows, BatchSize = batchSize, Settings = settings,
                    FirstStep = 5,
            }, layout);
            // The gradient is summed per thread, then across threads: another order than the reference's, so the
            // parameters agree to float rounding carried through Adam, not bit for bit.
            Tolerance.AllClose(expected, buffers.Parameters.ToArray(), "parameters after the epoch", abs: 2e-5, rel: 1e-4);
            Tolerance.AllClose(m, buffers.M.ToArray(), "Adam m", abs: 1e-6, rel: 1e-4);
            Tolerance.AllClose(expectedLoss, buffers.Loss.ToArray(), "per-sample loss", abs: 1e-5, rel: 1e-4);
            Tolerance.AllClose(expectedCorrect, buffers.Correct.ToArray(), "per-sample correctness", 0, 0);
            Assert.NotEqual(parameters, buffers.Parameters.ToArray()); // it did train
        }
    }

    [Theory]
    [InlineData(1, EnsembleKind.Independent, 1)]
    [InlineData(829, EnsembleKind.Independent, 1)]
    [InlineData(65, EnsembleKind.Independent, 1)]
    [InlineData(65, EnsembleKind.Independent, 3)]
    [InlineData(66, EnsembleKind.Batch, 4)]
    [InlineData(67, EnsembleKind.Mini, 5)]
    public void Score_matches_the_reference_forward(int rows, EnsembleKind kind, int members)
    {
        fixture.RequireCpuEpoch();
        // Scoring's loss is the members' mean probability's (one member: the logit's own).
        var layout = ParameterLayout.ForClassifier(15, [64, 32], kind, members);
        var rng = new Random(rows);
        var parameters = Tolerance.Random(rng, layout.Count, 0.5f);
        var features = Tolerance.Random(rng, rows * 15, 2f);
        var labels = Enumerable.Range(0, rows).Select(_ => (float)rng.Next(2)).ToArray();
        var order = Enumerable.Range(0, rows).OrderBy(_ => rng.Next()).ToArray();

        var x = order.SelectMany(row => features.AsSpan(row * 15, 15).ToArray()).ToArray();
        var y = order.Select(row => labels[row]).ToArray();
        var logits = NetworkReference.Logits<float>(layout, parameters, x, rows);
        var samples = Enumerable.Range(0, rows).Select(r => Loss.EnsembleSampleReference<float>(logits.AsSpan(r * members, members), y[r],
            lossOfMean: true)).ToArray();
        var expectedLoss = samples.Select(e => e.Loss).ToArray();
        var expectedCorrect = samples.Select(e => e.Correct ? 1f : 0f).ToArray();

        // Scoring reads rows in place: the rows, in the reference's order, are the data.
        using var buffers = Upload(layout, x, y, Enumerable.Range(0, rows).ToArray(), parameters, 2 * device.Plan.OneGroupThreads);
        {
            device.ScoreCpuEpoch(new EpochScoreViews
            {
                Network = buffers.Network, Features = buffers.Features.View, Labels = buffers.Labels.View,
                SampleLoss = buffers.Loss.View, SampleCorrect = buffers.Correct.View, Rows = rows,
            }, layout);
            Tolerance.AllClose(expectedLoss, buffers.Loss.ToArray(), "per-sample loss", abs: 1e-5, rel: 1e-4);
            Tolerance.AllClose(expectedCorrect, buffers.Correct.ToArray(), "per-sample correctness", 0, 0);
            Assert.Equal(parameters, buffers.Parameters.ToArray()); // scoring trains nothing
        }
    }

    [Theory]
    [InlineData(1, EnsembleKind.Independent, 1)]
    [InlineData(6, EnsembleKind.Independent, 1)]
    [InlineData(829, EnsembleKind.Independent, 1)]
    [InlineData(65, EnsembleKind.Independent, 1)]
    [InlineData(65, EnsembleKind.Independent, 3)]
    [InlineData(7, EnsembleKind.Batch, 4)]
    [InlineData(66, EnsembleKind.Mini, 5)]
    public void Predict_matches_the_reference_forward_and_sigmoid(int rows, EnsembleKind kind, int members)
    {
        fixture.RequireCpuEpoch();
        var layout = ParameterLayout.ForClassifier(15, [64, 32], kind, members);
        var rng = new Random(rows + 7);
        var parameters = Tolerance.Random(rng, layout.Count, 0.5f);
        var features = Tolerance.Random(rng, rows * 15, 2f);
        var expected = NetworkReference.Predict<float>(layout, parameters, features, rows);

        using var buffers = Upload(layout, features, new float[rows], Enumerable.Range(0, rows).ToArray(), parameters, 2 * device.Plan.OneGroupThreads);
        {
            using var probabilities = device.Allocate<float>(rows);
            device.PredictCpuEpoch(new EpochPredictViews { Network = buffers.Network, Features = buffers.Features.View,
                Probabilities = probabilities.View, Rows = rows }, layout);
            Tolerance.AllClose(expected, probabilities.ToArray(), "probability", abs: 1e-5, rel: 1e-4);
        }
    }

    /// <summary>The CPU epoch's device buffers, sized as its engine sizes them for batches of up to <paramref name="batchRows"/> rows.</summary>
    private EpochBuffers Upload(ParameterLayout layout, float[] features, float[] labels, int[] order, float[] parameters, int batchRows)
    {
        int rows = labels.Length, threads = device.Plan.OneGroupThreads;
        int rowsPerThread = (batchRows + threads - 1) / threads;
        var b = new EpochBuffers(
            device.Upload<float>(features, rows, layout.Inputs(0)), device.Upload<float>(labels, rows), device.Upload<int>(order, rows),
            device.Allocate<float>(rows), device.Allocate<float>(rows), device.Upload<float>(parameters, layout.Count),
            device.Allocate<float>(layout.Count), device.Allocate<float>(layout.Count),
            device.Allocate<float>(threads, layout.Count), device.Allocate<float>(threads, 2 * rowsPerThread * layout.Members * layout.ActivationWidth),
            device.Upload<LayerShape>(layout.Shapes, layout.Layers), rowsPerThread);
        b.M.Clear();
        b.V.Clear();
        return b;
    }

    private sealed record EpochBuffers(DeviceBuffer<float> Features, DeviceBuffer<float> Labels, DeviceBuffer<int> Order, DeviceBuffer<float> Loss,
        DeviceBuffer<float> Correct, DeviceBuffer<float> Parameters, DeviceBuffer<float> M, DeviceBuffer<float> V, DeviceBuffer<float> Gradients,
        DeviceBuffer<float> Scratch, DeviceBuffer<LayerShape> Layers, int RowsPerThread) : IDisposable
    {
        public EpochNetworkViews Network => new() { Parameters = Parameters.View, Layers = Layers.View, Scratch = Scratch.View, RowsPerThread = RowsPerThread };

        public void Dispose()
        {
            foreach (var buffer in new[] { Features, Labels, Loss, Correct, Parameters, M, V, Gradients, Scratch })
                buffer.Dispose();
            Order.Dispose();
            Layers.Dispose();
        }
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    public void Dropout_kernel_matches_its_reference_and_drops_the_rate(float rate)
    {
        int rows = 257, cols = 64;
        var values = Tolerance.Random(new Random(9), rows * cols).Select(v => v + 2f).ToArray(); // all positive
        var expected = (float[])values.Clone();
        Dropout.ApplyReference(expected, rows, cols, 123, 4, 1, rate);
        using var buffer = device.Upload<float>(values, rows, cols);
        device.ApplyDropout(new DropoutArgs { Values = buffer.View, Rows = rows, Cols = cols, Layer = 1, Step = 4, Seed = 123, Rate = rate });
        var actual = buffer.ToArray();
        Tolerance.AllClose(expected, actual, "dropped values", 0, 1e-6);
        double dropped = actual.Count(v => v == 0f) / (double)actual.Length;
        Assert.InRange(dropped, rate - 0.03, rate + 0.03); // 16448 draws: the standard error is below 0.004
        for (int k = 0; k < actual.Length; k++) // each value is dropped or scaled by 1 / (1 - rate)
            Assert.True(actual[k] == 0f || Math.Abs(actual[k] - values[k] / (1 - rate)) <= 1e-5 * actual[k], $"value {k}: {actual[k]} from {values[k]}");
        // Another step draws another mask.
        var next = (float[])values.Clone();
        Dropout.ApplyReference(next, rows, cols, 123, 5, 1, rate);
        Assert.NotEqual(expected, next);
    }
}
