// The fused one-launch epoch against the layer-by-layer reference epoch (Dense, Loss, Adam references).
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class FusedMlpTests(AcceleratorFixture fixture)
{
    private readonly ComputeDevice device = fixture.Device;

    public static TheoryData<int[], int, int, bool, float> Cases()
    {
        var data = new TheoryData<int[], int, int, bool, float>();
        foreach (bool throughViews in new[] { false, true })
        {
            data.Add([15, 64, 32, 1], 100, 32, throughViews, 0f);
            data.Add([15, 64, 32, 1], 100, 32, throughViews, 0.3f); // dropout on both hidden layers
            data.Add([5, 9, 3, 1], 65, 7, throughViews, 0f);   // odd widths, a partial last batch
            data.Add([4, 1], 13, 1, throughViews, 0.5f);       // logistic regression (no hidden layer to drop), batch of one
            data.Add([15, 16, 1], 40, 64, throughViews, 0.2f); // one batch larger than the data
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Epoch_matches_the_layer_by_layer_reference(int[] widths, int rows, int batchSize, bool throughViews, float dropout)
    {
        var rng = new Random(rows * 31 + batchSize);
        int count = 0, activationWidth = 0;
        for (int l = 0; l + 1 < widths.Length; l++)
        {
            count += widths[l + 1] * widths[l] + widths[l + 1];
            activationWidth += widths[l + 1];
        }
        var features = Tolerance.Random(rng, rows * widths[0], 2f);
        var labels = Enumerable.Range(0, rows).Select(_ => (float)rng.Next(2)).ToArray();
        var order = Enumerable.Range(0, rows).OrderBy(_ => rng.Next()).ToArray();
        var parameters = Tolerance.Random(rng, count, 0.5f);
        int steps = (rows + batchSize - 1) / batchSize;
        var schedule = new float[steps * 3];
        for (int t = 1; t <= steps; t++)
        {
            var s = AdamStep.At(t, 0.01f / t); // a decaying rate: the schedule is read per step
            (schedule[(t - 1) * 3], schedule[(t - 1) * 3 + 1], schedule[(t - 1) * 3 + 2]) = (s.LearningRate, s.BiasCorrection1, s.BiasCorrection2);
        }

        var expected = (float[])parameters.Clone();
        var m = new float[count];
        var v = new float[count];
        var expectedLoss = new float[rows];
        var expectedCorrect = new float[rows];
        FusedMlp.TrainEpochReference(widths, features, labels, order, batchSize, schedule, expected, m, v, expectedLoss, expectedCorrect, weightDecay: 0.01f,
            dropoutRate: dropout, dropoutSeed: 77, firstStep: 5);

        int threads = device.FusedThreads;
        int rowsPerThread = (Math.Min(batchSize, rows) + threads - 1) / threads;
        using var x = device.Upload<float>(features, rows, widths[0]);
        using var y = device.Upload<float>(labels, rows);
        using var o = device.Upload<int>(order, rows);
        using var loss = device.Allocate<float>(rows);
        using var correct = device.Allocate<float>(rows);
        using var p = device.Upload<float>(parameters, count);
        using var md = device.Allocate<float>(count);
        using var vd = device.Allocate<float>(count);
        md.Clear();
        vd.Clear();
        using var gradients = device.Allocate<float>(threads, count);
        using var scratch = device.Allocate<float>(threads, 2 * rowsPerThread * activationWidth);
        using var w = device.Upload<int>(widths, widths.Length);
        using var sched = device.Upload<float>(schedule, steps, 3);
        device.TrainEpochFused(new FusedEpochArgs
        {
            Features = x.View, Labels = y.View, Order = o.View, SampleLoss = loss.View, SampleCorrect = correct.View,
            Parameters = p.View, AdamM = md.View, AdamV = vd.View, ThreadGradients = gradients.View, Scratch = scratch.View,
            Widths = w.View, Schedule = sched.View,
            Rows = rows, BatchSize = batchSize, Layers = widths.Length - 1, ParameterCount = count,
            RowsPerThread = rowsPerThread, ActivationWidth = activationWidth,
            Beta1 = 0.9f, Beta2 = 0.999f, Epsilon = 1e-7f, WeightDecay = 0.01f,
            DropoutRate = dropout, DropoutSeed = 77, FirstStep = 5,
        }, throughViews);
        // The gradient is summed per thread, then across threads: another order than the reference's, so the
        // parameters agree to float rounding carried through Adam, not bit for bit.
        Tolerance.AllClose(expected, p.ToArray(), "parameters after the epoch", abs: 2e-5, rel: 1e-4);
        Tolerance.AllClose(m, md.ToArray(), "Adam m", abs: 1e-6, rel: 1e-4);
        Tolerance.AllClose(expectedLoss, loss.ToArray(), "per-sample loss", abs: 1e-5, rel: 1e-4);
        Tolerance.AllClose(expectedCorrect, correct.ToArray(), "per-sample correctness", 0, 0);
        Assert.NotEqual(parameters, p.ToArray()); // it did train
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 1)]
    [InlineData(false, 829)]
    [InlineData(true, 65)]
    public void Score_matches_the_forward_reference(bool throughViews, int rows)
    {
        int[] widths = [15, 64, 32, 1];
        var rng = new Random(rows);
        int count = 15 * 64 + 64 + 64 * 32 + 32 + 32 + 1;
        var parameters = Tolerance.Random(rng, count, 0.5f);
        var features = Tolerance.Random(rng, rows * 15, 2f);
        var labels = Enumerable.Range(0, rows).Select(_ => (float)rng.Next(2)).ToArray();
        var order = Enumerable.Range(0, rows).OrderBy(_ => rng.Next()).ToArray();

        var expectedLoss = new float[rows];
        var expectedCorrect = new float[rows];
        for (int position = 0; position < rows; position++)
        {
            float[] h1 = new float[64], h2 = new float[32], z = new float[1];
            int row = order[position];
            Dense.ForwardReference<float>(features.AsSpan(row * 15, 15), parameters.AsSpan(0, 960), parameters.AsSpan(960, 64), h1, 1, 15, 64, Activation.Relu);
            Dense.ForwardReference<float>(h1, parameters.AsSpan(1024, 2048), parameters.AsSpan(3072, 32), h2, 1, 64, 32, Activation.Relu);
            Dense.ForwardReference<float>(h2, parameters.AsSpan(3104, 32), parameters.AsSpan(3136, 1), z, 1, 32, 1, Activation.Identity);
            expectedLoss[position] = Loss.BinaryCrossEntropyReference(z[0], labels[row]);
            expectedCorrect[position] = Loss.IsCorrectReference(z[0], labels[row]) ? 1f : 0f;
        }

        int threads = device.FusedThreads;
        using var x = device.Upload<float>(features, rows, 15);
        using var y = device.Upload<float>(labels, rows);
        using var o = device.Upload<int>(order, rows);
        using var loss = device.Allocate<float>(rows);
        using var correct = device.Allocate<float>(rows);
        using var p = device.Upload<float>(parameters, count);
        using var unused = device.Allocate<float>(count);
        using var gradients = device.Allocate<float>(threads, count);
        using var scratch = device.Allocate<float>(threads, 2 * 97);
        using var w = device.Upload<int>(widths, widths.Length);
        device.ScoreFused(new FusedEpochArgs
        {
            Features = x.View, Labels = y.View, Order = o.View, SampleLoss = loss.View, SampleCorrect = correct.View,
            Parameters = p.View, AdamM = unused.View, AdamV = unused.View, ThreadGradients = gradients.View, Scratch = scratch.View,
            Widths = w.View, Schedule = unused.View, Rows = rows, BatchSize = 1, Layers = 3, ParameterCount = count,
            RowsPerThread = 1, ActivationWidth = 97,
        }, throughViews);
        Tolerance.AllClose(expectedLoss, loss.ToArray(), "per-sample loss", abs: 1e-5, rel: 1e-4);
        Tolerance.AllClose(expectedCorrect, correct.ToArray(), "per-sample correctness", 0, 0);
        Assert.Equal(parameters, p.ToArray()); // scoring trains nothing
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
