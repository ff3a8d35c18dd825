// The preprocessing (feature encodings, the quantile and piecewise-linear transforms) and the learning-rate schedule, against values worked out by hand.

namespace HitGpu.Nn.Tests;

public sealed class EncodingTests
{
    private static float[] Row(params (string Name, float Value)[] values)
    {
        var row = new float[SongData.FeatureCount];
        foreach (var (name, value) in values)
            row[Array.IndexOf(SongData.FeatureNames, name)] = value;
        return row;
    }

    [Fact]
    public void Log_and_one_hot_encoding_by_hand()
    {
        var encoding = new FeatureEncoding(["duration_ms", "sections"], ["key", "time_signature"]);
        // 13 kept features + 12 keys + 5 time signatures.
        Assert.Equal(30, encoding.Width);
        Assert.Equal("log1p(duration_ms)", encoding.Columns[10]);
        Assert.Equal("key=0", encoding.Columns[13]);
        Assert.Equal("time_signature=5", encoding.Columns[^1]);
        var encoded = encoding.Apply(Row(("duration_ms", 240000f), ("sections", 9f), ("key", 7f), ("time_signature", 4f), ("tempo", 120f),
            ("danceability", 0.5f)));
        Assert.Equal(0.5f, encoded[0]);
        Assert.Equal(120f, encoded[9]); // tempo keeps its place among the kept features
        Assert.Equal(MathF.Log(240001f), encoded[10], 5);
        Assert.Equal(MathF.Log(10f), encoded[12], 5);
        Assert.Equal(1f, encoded[13 + 7]);
        Assert.Equal(1f, encoded[13 + 12 + 3]); // time signature 4 is the fourth of 0, 1, 3, 4, 5
        Assert.Equal(2f, encoded.Skip(13).Sum());
        Assert.Equal(new float[SongData.FeatureCount], FeatureEncoding.Raw.Apply(new float[SongData.FeatureCount]));
        Assert.Throws<ArgumentException>(() => new FeatureEncoding(["tempo"], ["tempo"]));
        Assert.Throws<ArgumentException>(() => new FeatureEncoding([], ["tempo"]));
    }

    /// <summary>(n, 15) raw rows where one feature takes the given values and the others stay constant.</summary>
    private static float[] Rows(int feature, float[] values)
    {
        var raw = new float[values.Length * SongData.FeatureCount];
        Array.Fill(raw, 0.5f);
        for (int r = 0; r < values.Length; r++)
            raw[r * SongData.FeatureCount + feature] = values[r];
        return raw;
    }

    private const int Instrumentalness = 7;

    [Fact]
    public void Quantile_transform_is_monotone_maps_ties_alike_and_is_fitted_on_its_input()
    {
        // 0 repeated (as instrumentalness often is), then a long tail.
        var train = Enumerable.Range(0, 1000).Select(i => i < 400 ? 0f : MathF.Pow(i - 399, 3)).ToArray();
        var s = Preprocessing.Fit(Rows(Instrumentalness, train), FeatureEncoding.Raw, InputTransform.Quantile);
        Assert.Equal(SongData.FeatureCount, s.NetworkInputs);
        float[] Column(float[] values) => s.Apply(Rows(Instrumentalness, values)).Where((_, i) => i % SongData.FeatureCount == Instrumentalness).ToArray();
        var z = Column(train);
        for (int i = 1; i < z.Length; i++)
            Assert.True(z[i] >= z[i - 1], $"not monotone at {i}");
        Assert.Equal(z[0], z[399]);                     // all zeros map to one value
        Assert.True(Math.Abs(z.Average()) < 1e-3);      // standardised after the transform
        Assert.True(z.Max() < 4 && z.Min() > -4);       // the cubic tail no longer dominates
        var outside = Column([-5f, 1e12f]);
        Assert.Equal(Column([0f])[0], outside[0]);      // below the training range: the lowest value's score
        Assert.Equal(z[^1], outside[1], 4);             // above it: the highest value's score
        Tolerance.Close(1.959963985, Preprocessing.NormalQuantile(0.975), "normal quantile", 1e-8, 0);
        Tolerance.Close(-2.326347874, Preprocessing.NormalQuantile(0.01), "normal quantile", 1e-8, 0);
    }

    [Fact]
    public void Robust_scaling_and_smooth_clipping_by_hand()
    {
        // Knots 0..8: median 4, quartiles 2 and 6 (IQR 4). A column of one value: spread 1.
        float[][] knots = [Enumerable.Range(0, 9).Select(i => (float)i).ToArray(), [3, 3, 3, 3, 3, 3, 3, 3, 3]];
        var scaled = Preprocessing.RobustClipped([4f, 3f, 8f, 3f, 16f, 7f, -44f, 3f], columns: 2, knots);
        // (4-4)/4 = 0; (8-4)/4 = 1 -> 1/sqrt(1 + 1/9); (16-4)/4 = 3 -> 3/sqrt(2); (-44-4)/4 = -12 -> -12/sqrt(17); (7-3)/1 = 4 -> 4/sqrt(1 + 16/9).
        float[] expected = [0f, 0f, 1f / MathF.Sqrt(1f + 1f / 9f), 0f, 3f / MathF.Sqrt(2f), 4f / MathF.Sqrt(1f + 16f / 9f), -12f / MathF.Sqrt(17f), 0f];
        Tolerance.AllClose(expected, scaled, "robust-clipped", abs: 1e-6, rel: 1e-6);
        Assert.InRange(Preprocessing.RobustClipped([1e9f], 1, [knots[0]])[0], 2.99f, 3f); // never past 3: the clip is smooth but bounded

        // Fitted: one input per feature, standardised after the clip.
        var rng = new Random(3);
        var train = Enumerable.Range(0, 500).Select(_ => MathF.Pow(rng.NextSingle(), 3) * 100).ToArray();
        var s = Preprocessing.Fit(Rows(Instrumentalness, train), FeatureEncoding.Raw, InputTransform.Robust);
        var z = s.Apply(Rows(Instrumentalness, train));
        Assert.True(Math.Abs(Enumerable.Range(0, train.Length).Average(r => z[r * s.NetworkInputs + Instrumentalness])) < 1e-4);
    }

    [Fact]
    public void Piecewise_linear_encoding_by_hand()
    {
        // Knots 0, 1, ..., 8 over two bins: edges 0, 4, 8. And a column of ties: edges 0, 0, 5.
        float[][] knots = [Enumerable.Range(0, 9).Select(i => (float)i).ToArray(), [0, 0, 0, 0, 0, 1, 2, 3, 5]];
        var encoded = Preprocessing.Piecewise([-1f, 0f, 2f, 0f, 6f, 1f, 9f, 7f], columns: 2, knots, bins: 2);
        // Row by row: column 0 in bins (0..4, 4..8), then column 1 in bins (0..0 as a step at 0, 0..5).
        Assert.Equal([0f, 0f, 1f, 0f, 0.5f, 0f, 1f, 0f, 1f, 0.5f, 1f, 0.2f, 1f, 1f, 1f, 1f], encoded);

        // Fitted: bins x features inputs, standardised, and a value's bins add up to its position (monotone).
        var rng = new Random(5);
        var train = Enumerable.Range(0, 500).Select(_ => MathF.Pow(rng.NextSingle(), 3) * 100).ToArray();
        var s = Preprocessing.Fit(Rows(Instrumentalness, train), FeatureEncoding.Raw, InputTransform.Piecewise(8));
        Assert.Equal(SongData.FeatureCount * 8, s.NetworkInputs);
        var z = s.Apply(Rows(Instrumentalness, train));
        Assert.Equal(train.Length * SongData.FeatureCount * 8, z.Length);
        for (int c = Instrumentalness * 8; c < Instrumentalness * 8 + 8; c++)
            Assert.True(Math.Abs(Enumerable.Range(0, train.Length).Average(r => z[r * s.NetworkInputs + c])) < 1e-4, $"input {c} not centred");
        var sorted = train.Order().ToArray();
        var raw = Preprocessing.Piecewise(sorted, 1, [s.Knots![Instrumentalness]], 8);
        var positions = Enumerable.Range(0, sorted.Length).Select(r => raw.AsSpan(r * 8, 8).ToArray().Sum()).ToArray();
        for (int r = 1; r < positions.Length; r++)
            Assert.True(positions[r] >= positions[r - 1], $"not monotone at {r}");
        Assert.Equal(0f, positions[0]);
        Assert.Equal(8f, positions[^1]);
        Assert.Throws<ArgumentException>(() => Preprocessing.Fit(Rows(Instrumentalness, train), FeatureEncoding.Raw,
            InputTransform.Piecewise(Preprocessing.KnotCount)));
        Assert.Throws<ArgumentException>(() => Preprocessing.Fit(Rows(Instrumentalness, train), FeatureEncoding.Raw, InputTransform.Piecewise(0)));
        Assert.Throws<ArgumentException>(() => Preprocessing.Fit(Rows(Instrumentalness, train), FeatureEncoding.Raw,
            InputTransform.Quantile with { Bins = 8 }));
    }

    [Fact]
    public void One_fitted_object_encodes_transforms_and_standardises_in_that_order()
    {
        // log1p of duration, one-hot key, quantile scores, then standardisation: the same as each step by hand.
        var songs = SongData.LoadEmbedded90s().Subset(Enumerable.Range(0, 300).ToArray());
        var encoding = new FeatureEncoding(["duration_ms"], ["key"]);
        var fitted = Preprocessing.Fit(songs.Features, encoding, InputTransform.Quantile);
        Assert.Equal(encoding.Width, fitted.NetworkInputs);
        var encoded = encoding.Apply(songs.Features);
        var scores = Preprocessing.QuantileScores(encoded, encoding.Width, fitted.Knots!);
        var byHand = scores.Select((v, i) => (v - fitted.Means[i % encoding.Width]) / fitted.Deviations[i % encoding.Width]).ToArray();
        Assert.Equal(byHand, fitted.Apply(songs.Features));
        Assert.Null(Preprocessing.Fit(songs.Features, encoding, InputTransform.Standard).Knots);
        Assert.Throws<ArgumentException>(() => new Preprocessing(encoding, InputTransform.Quantile, null, fitted.Means, fitted.Deviations));
    }

    [Fact]
    public void Learning_rate_schedule_by_hand()
    {
        var options = new TrainingOptions { LearningRate = 0.01f, Epochs = 10, WarmupEpochs = 2, Schedule = LearningRateSchedule.Cosine };
        // 10 steps an epoch, 100 in all: 20 warm-up steps rising to 0.01, then half a cosine over 80 steps.
        Assert.Equal(0.0005f, options.LearningRateAt(1, 100, 10), 7);
        Assert.Equal(0.01f, options.LearningRateAt(20, 100, 10), 7);
        Assert.Equal(0.005f, options.LearningRateAt(60, 100, 10), 6);   // half-way through the cosine
        Assert.Equal(0f, options.LearningRateAt(100, 100, 10), 7);
        Assert.Equal(0.01f, (options with { Schedule = LearningRateSchedule.Constant }).LearningRateAt(60, 100, 10));
    }
}
