// The GPU epoch (one launch of one group per network) against its reference (NetworkReference.Step and Adam
// per batch), on groups of several threads: on the CPU accelerator a device opened with 7 (odd: every strided
// loop ends mid-group) beside the tests' own; many runs in one launch against each run alone; scoring and
// prediction against the reference forward.
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class GpuEpochTests(AcceleratorFixture fixture)
{
    private static readonly Lazy<ComputeDevice> Seven = new(() => ComputeDevice.Open(AcceleratorKind.Cpu, cpuThreads: 7));

    /// <summary>A device whose groups have several threads: the tests' own on a GPU, else a CPU one of 7.</summary>
    private ComputeDevice Device => fixture.Device.Kind == AcceleratorKind.Cpu ? Seven.Value : fixture.Device;

    public static TheoryData<int[], int, int, float, EnsembleKind, int> Cases() => CpuEpochTests.Cases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Epoch_matches_the_reference_step_by_step(int[] widths, int rows, int batchSize, float dropout, EnsembleKind kind, int members) =>
        EpochMatchesTheReference(new ParameterLayout(widths, null, kind, members), rows, batchSize, dropout);

    [Theory]
    [MemberData(nameof(CpuEpochTests.PerFeatureEmbeddingEnsembles), MemberType = typeof(CpuEpochTests))]
    public void Epoch_with_a_per_feature_embedding_matches_the_reference(EnsembleKind kind, int members) =>
        EpochMatchesTheReference(ParameterLayout.WithEmbedding(5, 7, 4, [9], kind, members), 50, 8, 0.2f);

    [Theory]
    [MemberData(nameof(CpuEpochTests.PeriodicEmbeddingEnsembles), MemberType = typeof(CpuEpochTests))]
    public void Epoch_with_a_periodic_embedding_matches_the_reference(EnsembleKind kind, int members) =>
        EpochMatchesTheReference(ParameterLayout.WithPeriodicEmbedding(5, 3, 4, [9], kind, members), 50, 8, 0.2f);

    /// <summary>One run's inputs and what the reference makes of them.</summary>
    private sealed record Run(int[] Order, float[] Parameters, StepSettings Settings, AdamStep[] Schedule, int FirstStep,
        float[] Expected, float[] M, float[] V, float[] Loss, float[] Correct);

    private static Run MakeRun(ParameterLayout layout, float[] features, float[] labels, int rows, int batchSize, float dropout, int seed, int firstStep)
    {
        var rng = new Random(seed);
        var order = Enumerable.Range(0, labels.Length).OrderBy(_ => rng.Next()).Take(rows).ToArray();
        var parameters = Tolerance.Random(rng, layout.Count, 0.5f);
        var settings = StepSettings.Default with { WeightDecay = 0.01f, DropoutRate = dropout, DropoutSeed = (uint)(77 + seed),
            LabelSmoothing = dropout > 0.25f ? 0.1f : 0f };
        int steps = (rows + batchSize - 1) / batchSize;
        var schedule = Enumerable.Range(1, steps).Select(t => AdamStep.At(t, 0.01f / t, settings)).ToArray(); // read per step
        var run = new Run(order, parameters, settings, schedule, firstStep, (float[])parameters.Clone(), new float[layout.Count], new float[layout.Count],
            new float[rows], new float[rows]);
        CpuEpoch.TrainReference(layout, features, labels, order, batchSize, schedule, run.Expected, run.M, run.V, run.Loss, run.Correct, settings, firstStep);
        return run;
    }

    private void EpochMatchesTheReference(ParameterLayout layout, int rows, int batchSize, float dropout)
    {
        var rng = new Random(rows * 31 + batchSize);
        var features = Tolerance.Random(rng, rows * layout.Inputs(0), 2f);
        var labels = Enumerable.Range(0, rows).Select(_ => (float)rng.Next(2)).ToArray();
        var run = MakeRun(layout, features, labels, rows, batchSize, dropout, seed: rows, firstStep: 5);
        var (parameters, m, loss, correct) = Train(Device, layout, features, labels, batchSize, [run])[0];
        // Each gradient is summed over the rows in order, as the reference does, but the forward sums start from
        // the bias: the parameters agree to float rounding carried through Adam, not bit for bit.
        Tolerance.AllClose(run.Expected, parameters, "parameters after the epoch", abs: 2e-5, rel: 1e-4);
        Tolerance.AllClose(run.M, m, "Adam m", abs: 1e-6, rel: 1e-4);
        Tolerance.AllClose(run.Loss, loss, "per-sample loss", abs: 1e-5, rel: 1e-4);
        Tolerance.AllClose(run.Correct, correct, "per-sample correctness", 0, 0);
        Assert.NotEqual(run.Parameters, parameters); // it did train
    }

    [Fact]
    public void Runs_in_one_launch_each_match_the_reference_and_training_alone()
    {
        // Three runs of one layout, one group each: their own rows (different counts: different step counts),
        // starting weights, dropout seeds and rates, label smoothing, schedules and first steps.
        var layout = new ParameterLayout([15, 16, 8, 1], null, EnsembleKind.Batch, 3);
        var rng = new Random(3);
        int n = 90, batchSize = 16;
        var features = Tolerance.Random(rng, n * 15, 2f);
        var labels = Enumerable.Range(0, n).Select(_ => (float)rng.Next(2)).ToArray();
        Run[] runs = [MakeRun(layout, features, labels, 90, batchSize, 0.3f, 1, 0), MakeRun(layout, features, labels, 41, batchSize, 0f, 2, 17),
            MakeRun(layout, features, labels, 70, batchSize, 0.1f, 3, 3)];
        var together = Train(Device, layout, features, labels, batchSize, runs);
        for (int r = 0; r < runs.Length; r++)
        {
            Tolerance.AllClose(runs[r].Expected, together[r].Parameters, $"run {r}'s parameters", abs: 2e-5, rel: 1e-4);
            Tolerance.AllClose(runs[r].Loss, together[r].Loss, $"run {r}'s per-sample loss", abs: 1e-5, rel: 1e-4);
            var alone = Train(Device, layout, features, labels, batchSize, [runs[r]])[0];
            Assert.Equal(alone.Parameters, together[r].Parameters); // a run's group does what it does alone, to the bit
            Assert.Equal(alone.Loss, together[r].Loss);
        }
    }

    [Fact]
    public void The_bits_do_not_depend_on_the_group_s_threads()
    {
        // Every sum is one work item's, over the rows in order: 2 threads and 7 on the CPU accelerator, or the
        // GPU's 256 and 7 on that GPU, give the same bits. (A GPU and the CPU need not: the GPU's compiler
        // contracts multiply-adds and its exp is another's.)
        var layout = new ParameterLayout([15, 16, 8, 1], null, EnsembleKind.Mini, 3);
        var rng = new Random(11);
        var features = Tolerance.Random(rng, 60 * 15, 2f);
        var labels = Enumerable.Range(0, 60).Select(_ => (float)rng.Next(2)).ToArray();
        var run = MakeRun(layout, features, labels, 60, 8, 0.2f, 5, 0);
        int threads = Device.Plan.OneGroupThreads;
        var a = Train(Device, layout, features, labels, 8, [run])[0];
        var other = fixture.Device.Kind == AcceleratorKind.Cpu ? fixture.Device : Device;
        var plan = other.Plan;
        if (other == Device)
            other.Plan = plan with { MaxGroupSize = 7 };
        try
        {
            Assert.NotEqual(threads, other.Plan.OneGroupThreads);
            var b = Train(other, layout, features, labels, 8, [run])[0];
            Assert.Equal(a.Parameters, b.Parameters);
            Assert.Equal(a.Loss, b.Loss);
        }
        finally
        {
            other.Plan = plan;
        }
    }

    /// <summary>Trains every run's epoch in one launch; each run's parameters, Adam m, per-sample loss and correctness.</summary>
    private static (float[] Parameters, float[] M, float[] Loss, float[] Correct)[]
        Train(ComputeDevice device, ParameterLayout layout, float[] features, float[] labels,
        int batchSize, Run[] runs)
    {
        int count = layout.Count, positions = runs.Max(r => r.Order.Length), steps = (positions + batchSize - 1) / batchSize;
        var order = new int[runs.Length * positions];
        var schedule = new AdamStep[runs.Length * steps];
        for (int r = 0; r < runs.Length; r++)
        {
            runs[r].Order.CopyTo(order, r * positions);
            runs[r].Schedule.CopyTo(schedule, r * steps);
        }
        using var x = device.Upload<float>(features, labels.Length, layout.Inputs(0));
        using var y = device.Upload<float>(labels, labels.Length);
        using var shapes = device.Upload<LayerShape>(layout.Shapes, layout.Layers);
        using var parameters = device.Upload<float>(runs.SelectMany(r => r.Parameters).ToArray(), runs.Length * count);
        using var m = device.Allocate<float>(runs.Length * count);
        using var v = device.Allocate<float>(runs.Length * count);
        using var orderOnDevice = device.Upload<int>(order, order.Length);
        using var loss = device.Allocate<float>(order.Length);
        using var correct = device.Allocate<float>(order.Length);
        using var jobs = device.Upload<EpochRun>(runs.Select(r => new EpochRun
            { Rows = r.Order.Length, FirstStep = r.FirstStep, Settings = r.Settings }).ToArray(), runs.Length);
        using var scheduleOnDevice = device.Upload<AdamStep>(schedule, schedule.Length);
        m.Clear();
        v.Clear();
        device.TrainGpuEpoch(new GpuEpochTrainViews
        {
            Features = x.View, Labels = y.View, Layers = shapes.View, Parameters = parameters.View, AdamM = m.View, AdamV = v.View,
            Order = orderOnDevice.View, SampleLoss = loss.View, SampleCorrect = correct.View, Runs = jobs.View, Schedule = scheduleOnDevice.View,
            RunCount = runs.Length, Positions = positions, Steps = steps, BatchSize = batchSize,
        }, layout);
        float[] p = parameters.ToArray(), moments = m.ToArray(), losses = loss.ToArray(), flags = correct.ToArray();
        return runs.Select((run, r) => (p[(r * count)..((r + 1) * count)], moments[(r * count)..((r + 1) * count)],
            losses[(r * positions)..(r * positions + run.Order.Length)], flags[(r * positions)..(r * positions + run.Order.Length)])).ToArray();
    }

    [Theory]
    [InlineData(1, EnsembleKind.Independent, 1)]
    [InlineData(829, EnsembleKind.Independent, 1)] // several chunks, the last partial
    [InlineData(65, EnsembleKind.Independent, 3)]
    [InlineData(66, EnsembleKind.Batch, 4)]
    [InlineData(67, EnsembleKind.Mini, 5)]
    public void Score_and_predict_match_the_reference_forward(int rows, EnsembleKind kind, int members)
    {
        var device = Device;
        var layout = ParameterLayout.ForClassifier(15, [64, 32], kind, members);
        var rng = new Random(rows);
        var parameters = Tolerance.Random(rng, layout.Count, 0.5f);
        var features = Tolerance.Random(rng, rows * 15, 2f);
        var labels = Enumerable.Range(0, rows).Select(_ => (float)rng.Next(2)).ToArray();
        var logits = NetworkReference.Logits<float>(layout, parameters, features, rows);
        var samples = Enumerable.Range(0, rows).Select(r => Loss.EnsembleSampleReference<float>(logits.AsSpan(r * members, members), labels[r],
            lossOfMean: true)).ToArray();

        using var x = device.Upload<float>(features, rows, 15);
        using var y = device.Upload<float>(labels, rows);
        using var shapes = device.Upload<LayerShape>(layout.Shapes, layout.Layers);
        using var p = device.Upload<float>(parameters, layout.Count);
        using var loss = device.Allocate<float>(rows);
        using var correct = device.Allocate<float>(rows);
        using var jobs = device.Upload<EpochRun>([new EpochRun { Rows = rows }], 1);
        var views = new GpuEpochScoreViews
        {
            Features = x.View, Labels = y.View, Layers = shapes.View, Parameters = p.View, LossOrProbability = loss.View, SampleCorrect = correct.View,
            Runs = jobs.View, RunCount = 1, Positions = rows, MaxRows = rows,
        };
        device.ScoreGpuEpoch(views, layout);
        Tolerance.AllClose(samples.Select(s => s.Loss).ToArray(), loss.ToArray(), "per-sample loss", abs: 1e-5, rel: 1e-4);
        Tolerance.AllClose(samples.Select(s => s.Correct ? 1f : 0f).ToArray(), correct.ToArray(), "per-sample correctness", 0, 0);
        device.ScoreGpuEpoch(views with { Labels = default }, layout);
        Tolerance.AllClose(NetworkReference.Predict<float>(layout, parameters, features, rows), loss.ToArray(), "probability", abs: 1e-5, rel: 1e-4);
        Assert.Equal(parameters, p.ToArray()); // scoring trains nothing
    }

    [Fact]
    public void Runs_score_their_own_rows_through_their_order_in_one_launch()
    {
        var device = Device;
        var layout = ParameterLayout.ForClassifier(15, [16, 8], EnsembleKind.Batch, 2);
        var rng = new Random(21);
        int n = 300;
        var features = Tolerance.Random(rng, n * 15, 2f);
        var labels = Enumerable.Range(0, n).Select(_ => (float)rng.Next(2)).ToArray();
        int[][] rows = [Enumerable.Range(0, n).OrderBy(_ => rng.Next()).Take(290).ToArray(), Enumerable.Range(0, n).OrderBy(_ => rng.Next()).Take(7).ToArray()];
        var parameters = rows.Select(_ => Tolerance.Random(rng, layout.Count, 0.5f)).ToArray();
        int positions = 290;
        var order = new int[2 * positions];
        rows[0].CopyTo(order, 0);
        rows[1].CopyTo(order, positions);

        using var x = device.Upload<float>(features, n, 15);
        using var y = device.Upload<float>(labels, n);
        using var shapes = device.Upload<LayerShape>(layout.Shapes, layout.Layers);
        using var p = device.Upload<float>(parameters.SelectMany(q => q).ToArray(), 2 * layout.Count);
        using var orderOnDevice = device.Upload<int>(order, order.Length);
        using var loss = device.Allocate<float>(order.Length);
        using var correct = device.Allocate<float>(order.Length);
        using var jobs = device.Upload<EpochRun>([new EpochRun { Rows = 290 }, new EpochRun { Rows = 7 }], 2);
        device.ScoreGpuEpoch(new GpuEpochScoreViews
        {
            Features = x.View, Labels = y.View, Layers = shapes.View, Parameters = p.View, Order = orderOnDevice.View, LossOrProbability = loss.View,
            SampleCorrect = correct.View, Runs = jobs.View, RunCount = 2, Positions = positions, MaxRows = 290,
        }, layout);
        var scored = loss.ToArray();
        for (int r = 0; r < 2; r++)
        {
            var xr = rows[r].SelectMany(row => features.AsSpan(row * 15, 15).ToArray()).ToArray();
            var logits = NetworkReference.Logits<float>(layout, parameters[r], xr, rows[r].Length);
            var expected = rows[r].Select((row, i) => Loss.EnsembleSampleReference<float>(logits.AsSpan(i * 2, 2), labels[row],
                lossOfMean: true).Loss).ToArray();
            Tolerance.AllClose(expected, scored.AsSpan(r * positions, rows[r].Length), $"run {r}'s per-sample loss", abs: 1e-5, rel: 1e-4);
        }
    }
}
