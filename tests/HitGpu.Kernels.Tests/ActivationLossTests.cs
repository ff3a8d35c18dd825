// ReLU, sigmoid and the fused sigmoid + binary cross-entropy kernel against their references.
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class ActivationLossTests(AcceleratorFixture fixture)
{
    private readonly ComputeDevice device = fixture.Device;

    [Theory]
    [InlineData(Activation.Relu, 1)]
    [InlineData(Activation.Relu, 1000)]
    [InlineData(Activation.Sigmoid, 7)]
    [InlineData(Activation.Sigmoid, 4097)]
    [InlineData(Activation.Identity, 65)]
    public void Activation_device_function_matches_reference(Activation activation, int n)
    {
        // Activations.Apply is what every kernel calls (there is no activation kernel of its own: the layers fuse it).
        var rng = new Random(n);
        var input = Tolerance.Random(rng, n, 30f);
        input[0] = activation == Activation.Sigmoid ? -100f : 3f; // a far tail must not overflow
        var expected = input.Select(z => Activations.ApplyReference(activation, z)).ToArray();
        Tolerance.AllClose(expected, input.Select(z => Activations.Apply((int)activation, z)).ToArray(), $"{activation}");
    }

    [Theory]
    [InlineData(Activation.Relu, 1000)]
    [InlineData(Activation.Sigmoid, 4097)]
    [InlineData(Activation.Identity, 65)]
    public void Derivative_device_function_matches_reference_and_the_slope_by_finite_differences(Activation activation, int n)
    {
        // Given outputs y = f(z), the device function gives f'(z): checked against the reference, and against
        // (f(z + h) - f(z - h)) / 2h in double at the z that gave each y.
        var rng = new Random(n + 5);
        var z = Tolerance.Random(rng, n, 6f);
        var y = z.Select(v => Activations.ApplyReference(activation, v)).ToArray();
        var actual = y.Select(v => Activations.DerivativeFromOutput((int)activation, v)).ToArray();
        Tolerance.AllClose(y.Select(v => Activations.DerivativeFromOutputReference(activation, v)).ToArray(), actual, $"{activation}'", 0, 0);
        const double h = 1e-6;
        for (int i = 0; i < n; i++)
            if (Math.Abs(z[i]) > 1e-3) // away from ReLU's kink
                Tolerance.Close((Activations.ApplyReference(activation, z[i] + h) - Activations.ApplyReference(activation, (double)z[i] - h)) / (2 * h),
                    actual[i], $"{activation}'({z[i]})", 1e-6, 1e-5);
    }

    [Fact]
    public void Sigmoid_reference_agrees_with_its_definition_in_double()
    {
        foreach (double z in new[] { -30.0, -2.5, -1e-3, 0.0, 0.7, 12.0 })
            Tolerance.Close(1 / (1 + Math.Exp(-z)), Activations.SigmoidReference(z), $"sigmoid({z})", 1e-15, 1e-14);
    }

    [Fact]
    public void Cross_entropy_reference_agrees_with_its_definition_in_double()
    {
        foreach (double z in new[] { -8.0, -0.3, 0.0, 0.9, 5.0 })
            foreach (double y in new[] { 0.0, 1.0 })
            {
                double p = 1 / (1 + Math.Exp(-z));
                double direct = -(y * Math.Log(p) + (1 - y) * Math.Log(1 - p));
                Tolerance.Close(direct, Loss.BinaryCrossEntropyReference(z, y), $"bce({z}, {y})", 1e-12, 1e-12);
            }
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(32, true)]
    [InlineData(63, true)]
    [InlineData(1000, false)]
    public void Loss_kernel_matches_reference(int rows, bool gathered)
    {
        var rng = new Random(rows + 11);
        int total = rows + 9, offset = 4;
        var logits = Tolerance.Random(rng, rows, 6f);
        logits[0] = 95f; // extreme logits: the loss must stay finite, no log(0)
        if (rows > 1) logits[1] = -95f;
        var labels = Enumerable.Range(0, total).Select(_ => (float)rng.Next(2)).ToArray();
        var index = Enumerable.Range(0, total).OrderBy(_ => rng.Next()).ToArray();
        float scale = 1f / rows;

        var expectedGradient = new float[rows];
        var expectedLoss = new float[total];
        var expectedCorrect = new float[total];
        for (int r = 0; r < rows; r++)
        {
            float y = labels[gathered ? index[offset + r] : offset + r];
            expectedGradient[r] = Loss.GradientReference(logits[r], y) * scale;
            expectedLoss[offset + r] = Loss.BinaryCrossEntropyReference(logits[r], y);
            expectedCorrect[offset + r] = Loss.IsCorrectReference(logits[r], y) ? 1f : 0f;
        }

        using var z = device.Upload<float>(logits, rows);
        using var lab = device.Upload<float>(labels, total);
        using var idx = device.Upload<int>(index, total);
        using var dz = device.Allocate<float>(rows);
        using var loss = device.Allocate<float>(total);
        using var correct = device.Allocate<float>(total);
        loss.Clear();
        correct.Clear();
        device.BinaryCrossEntropy(new LossArgs
        {
            Logits = z.View,
            Labels = gathered ? RowSource.Gather(lab.View, 1, idx.View, offset) : RowSource.InPlace(lab.View, 1, offset),
            LogitGradient = dz.View, SampleLoss = loss.View, SampleCorrect = correct.View,
            Rows = rows, GradientScale = scale,
        });
        Tolerance.AllClose(expectedGradient, dz.ToArray(), "dL/dz");
        Tolerance.AllClose(expectedLoss, loss.ToArray(), "loss");
        Tolerance.AllClose(expectedCorrect, correct.ToArray(), "correct", 0, 0);
    }

    [Theory]
    [InlineData(1, 3, 0f, 0)]
    [InlineData(7, 3, 0.1f, 0)]
    [InlineData(65, 4, 0.2f, 1)]
    [InlineData(33, 32, 0f, 1)]
    [InlineData(5, 1, 0.1f, 1)]
    public void Ensemble_loss_kernel_matches_reference(int rows, int members, float smoothing, int lossOfMean)
    {
        // k logits per row, member-minor: dL/dz_i = (sigmoid(z_i) - target) / (rows k) against the smoothed target;
        // a row's loss the members' mean loss (training) or the mean probability's (scoring); correct by the mean probability.
        var rng = new Random(rows * 7 + members);
        int total = rows + 3, offset = 2;
        var logits = Tolerance.Random(rng, rows * members, 6f);
        logits[0] = 60f; // a far tail: the loss stays finite
        var labels = Enumerable.Range(0, total).Select(_ => (float)rng.Next(2)).ToArray();
        float scale = 1f / (rows * members);
        var expectedGradient = new float[rows * members];
        var expectedLoss = new float[total];
        var expectedCorrect = new float[total];
        for (int r = 0; r < rows; r++)
        {
            float y = labels[offset + r], target = Loss.SmoothedTarget(y, smoothing);
            var z = logits.AsSpan(r * members, members);
            for (int i = 0; i < members; i++)
                expectedGradient[r * members + i] = Loss.GradientReference(z[i], target) * scale;
            expectedLoss[offset + r] = Loss.EnsembleSampleReference<float>(z, target, lossOfMean != 0).Loss;
            expectedCorrect[offset + r] = Loss.EnsembleSampleReference<float>(z, y, lossOfMean != 0).Correct ? 1f : 0f;
        }
        using var zs = device.Upload<float>(logits, rows * members);
        using var lab = device.Upload<float>(labels, total);
        using var dz = device.Allocate<float>(rows * members);
        using var loss = device.Allocate<float>(total);
        using var correct = device.Allocate<float>(total);
        loss.Clear();
        correct.Clear();
        device.BinaryCrossEntropy(new LossArgs
        {
            Logits = zs.View, Labels = RowSource.InPlace(lab.View, 1, offset), LogitGradient = dz.View,
            SampleLoss = loss.View, SampleCorrect = correct.View, Rows = rows, GradientScale = scale, Members = members,
            LossOfMean = lossOfMean, LabelSmoothing = smoothing,
        });
        Tolerance.AllClose(expectedGradient, dz.ToArray(), "dL/dz");
        Tolerance.AllClose(expectedLoss, loss.ToArray(), "sample loss", 1e-6, 1e-5);
        Tolerance.AllClose(expectedCorrect, correct.ToArray(), "correct", 0, 0);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(9, 3)]
    [InlineData(1025, 5)]
    [InlineData(4, 32)]
    public void Mean_probability_kernels_match_the_reference_and_finite_differences(int rows, int members)
    {
        // P(hit) of a row: the mean of its members' sigmoids (the reference prediction's formula); its slope per
        // logit, where explanations start the backward pass: sigma'(z_i) / k, against central differences in double.
        var rng = new Random(rows + members);
        var logits = Tolerance.Random(rng, rows * members, 8f);
        var expected = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            float sum = 0f;
            for (int i = 0; i < members; i++)
                sum += Activations.SigmoidReference(logits[r * members + i]);
            expected[r] = sum / members;
        }
        using var zs = device.Upload<float>(logits, rows * members);
        using var p = device.Allocate<float>(rows);
        using var slopes = device.Allocate<float>(rows * members);
        device.MeanProbability(zs.View, p.View, rows, members);
        device.MeanProbabilitySlope(zs.View, slopes.View, rows, members);
        Tolerance.AllClose(expected, p.ToArray(), "mean probability");
        var actual = slopes.ToArray();
        const double h = 1e-6;
        for (int e = 0; e < rows * members; e++)
        {
            double z = logits[e];
            double numeric = (Activations.SigmoidReference(z + h) - Activations.SigmoidReference(z - h)) / (2 * h) / members;
            Tolerance.Close(numeric, actual[e], $"slope of row-member {e}", 1e-7, 1e-4);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(3864)]
    [InlineData(700_001)]
    public void Sample_sums_match_the_double_sum_and_are_the_same_bits_each_run(int n)
    {
        // The GPU's per-epoch metrics: two sums over the samples, compensated in float, against double.
        var rng = new Random(n);
        var loss = Enumerable.Range(0, n).Select(_ => rng.NextSingle() * 3f).ToArray();
        var correct = Enumerable.Range(0, n).Select(_ => (float)rng.Next(2)).ToArray();
        using var l = device.Upload<float>(loss, n);
        using var c = device.Upload<float>(correct, n);
        using var sums = device.Allocate<float>(2);
        device.SumSamples(l.View, c.View, n, sums.View);
        var first = sums.ToArray();
        Tolerance.Close(loss.Sum(v => (double)v), first[0], "loss sum", 1e-6, 1e-6);
        Assert.Equal(correct.Sum(v => (double)v), first[1]); // whole numbers below 2^24: exact
        device.SumSamples(l.View, c.View, n, sums.View);
        Assert.Equal(first, sums.ToArray());
    }

    [Fact]
    public void Many_runs_sample_sums_in_one_launch_are_each_run_s_own_bits()
    {
        // Runs of 3864, 1 and 0 (left alone) and 700 slots at a stride of 4000: each run's two sums those of
        // the one-run kernel on its slots.
        int stride = 4000;
        int[] rows = [3864, 1, 0, 700];
        var rng = new Random(5);
        var loss = Enumerable.Range(0, rows.Length * stride).Select(_ => rng.NextSingle() * 3f).ToArray();
        var correct = Enumerable.Range(0, rows.Length * stride).Select(_ => (float)rng.Next(2)).ToArray();
        using var l = device.Upload<float>(loss, loss.Length);
        using var c = device.Upload<float>(correct, correct.Length);
        using var runs = device.Upload<EpochRun>(rows.Select(n => new EpochRun { Rows = n }).ToArray(), rows.Length);
        using var sums = device.Upload<float>(Enumerable.Repeat(-1f, 2 * rows.Length).ToArray(), 2 * rows.Length);
        using var one = device.Allocate<float>(2);
        device.SumRunSamples(l.View, c.View, runs.View, rows.Length, stride, sums.View);
        var all = sums.ToArray();
        for (int r = 0; r < rows.Length; r++)
        {
            if (rows[r] == 0)
            {
                Assert.Equal([-1f, -1f], all[(2 * r)..(2 * r + 2)]);
                continue;
            }
            device.SumSamples(l.View.SubView(r * stride, rows[r]), c.View.SubView(r * stride, rows[r]), rows[r], one.View);
            Assert.Equal(one.ToArray(), all[(2 * r)..(2 * r + 2)]);
        }
    }
}
