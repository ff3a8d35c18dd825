// Explanations: the probability's input gradient (the kernels' backward pass to the inputs) against finite
// differences of the reference; integrated gradients' completeness (contributions add up to the probability
// minus the baseline's) and the dummy property; permutation importance; the explain command.
using HitGpu.Cli;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class ExplainTests(AcceleratorFixture fixture) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-explain-").FullName;
    private static readonly Lazy<SongTable> Songs = new(SongData.LoadEmbedded90s);

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static readonly Lazy<HitModel> Quantile = new(() =>
    {
        using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
        var options = new TrainingOptions { Epochs = 3, EnsembleSize = 2, Encoding = new FeatureEncoding(["duration_ms"], ["key"]) };
        return Trainer.Train(device, Songs.Value, options).Model;
    });

    /// <summary>Plain networks, and the members' mean probability of ensembles and embeddings (the input gradient sums over members).</summary>
    private static ParameterLayout LayoutNamed(string name) => name switch
    {
        "15-16-8-1" => new ParameterLayout([15, 16, 8, 1]),
        "15-64-32-1" => new ParameterLayout([15, 64, 32, 1]),
        "7-1" => new ParameterLayout([7, 1]),
        "batch x3" => ParameterLayout.ForClassifier(15, [16, 8], EnsembleKind.Batch, 3),
        "independent x2" => ParameterLayout.ForClassifier(15, [16, 8], EnsembleKind.Independent, 2),
        "mini x3, periodic" => ParameterLayout.WithPeriodicEmbedding(15, 3, 2, [8], EnsembleKind.Mini, 3),
        _ => ParameterLayout.WithEmbedding(5, 4, 3, [8], EnsembleKind.Batch, 2), // piecewise
    };

    [Theory]
    [InlineData("15-16-8-1")]
    [InlineData("15-64-32-1")]
    [InlineData("7-1")]
    [InlineData("batch x3")]
    [InlineData("independent x2")]
    [InlineData("mini x3, periodic")]
    [InlineData("batch x2, piecewise")]
    public void The_probabilitys_input_gradient_matches_finite_differences_of_the_reference(string name)
    {
        var layout = LayoutNamed(name);
        int rows = 7, inputs = layout.Inputs(0);
        var rng = new Random(layout.Count);
        var parameters = Tolerance.Random(rng, layout.Count, 0.6f);
        var x = Tolerance.Random(rng, rows * inputs, 2f);
        using var network = new Network(fixture.Device, layout, 4); // fewer rows than asked: the chunks are tested too
        network.Reset(parameters);
        using var features = fixture.Device.Upload<float>(x, rows, inputs);
        var gradient = new float[rows * inputs];
        network.ProbabilityGradient(features, rows, gradient);
        Assert.Contains(gradient, g => Math.Abs(g) > 1e-3);

        // p, the members' mean probability, from the reference in double; central differences per input.
        var p64 = parameters.Select(v => (double)v).ToArray();
        double P(double[] row) => NetworkReference.Predict<double>(layout, p64, row, 1)[0];
        const double h = 1e-5;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < inputs; j++)
            {
                var row = x.Skip(r * inputs).Take(inputs).Select(v => (double)v).ToArray();
                row[j] += h;
                double up = P(row);
                row[j] -= 2 * h;
                double down = P(row);
                Tolerance.Close((up - down) / (2 * h), gradient[r * inputs + j], $"d p / d input ({r}, {j})", abs: 2e-6, rel: 1e-3);
            }
    }

    [Fact]
    public void Contributions_add_up_to_the_probability_minus_the_baselines_and_more_steps_add_up_closer()
    {
        // Completeness: the path integral of the gradient is P(song) - P(baseline); midpoint sums approach it.
        var songs = Songs.Value.Subset(Enumerable.Range(0, 40).Select(i => i * 131).ToArray());
        double Worst(Attributions a) => Enumerable.Range(0, a.Count)
            .Max(i => Math.Abs(a.Of(i).ToArray().Sum(v => (double)v) - (a.Probabilities[i] - a.BaselineProbability)));
        var coarse = Explain.IntegratedGradients(fixture.Device, Quantile.Value, songs, steps: 4);
        var fine = Explain.IntegratedGradients(fixture.Device, Quantile.Value, songs, steps: 128);
        Assert.True(Worst(fine) <= 0.01, $"contributions miss P(song) - P(baseline) by up to {Worst(fine):F5} with 128 steps");
        Assert.True(Worst(fine) < Worst(coarse), $"128 steps ({Worst(fine):F5}) no closer than 4 ({Worst(coarse):F5})");
        Assert.Equal(Quantile.Value.PredictProbabilities(fixture.Device, songs), fine.Probabilities);
        Assert.Equal(Quantile.Value.Preprocessing.Statistics!.Median, fine.Baseline);
        Assert.Contains(fine.Contributions, c => Math.Abs(c) > 1e-3);
    }

    [Fact]
    public void A_feature_at_the_baselines_value_contributes_nothing()
    {
        // The dummy property: no difference from the baseline, no contribution (the one-hot key included).
        var songs = Songs.Value.Subset(Enumerable.Range(0, 10).ToArray());
        var median = Quantile.Value.Preprocessing.Statistics!.Median;
        int tempo = Array.IndexOf(SongData.FeatureNames, "tempo"), key = Array.IndexOf(SongData.FeatureNames, "key");
        for (int i = 0; i < songs.Count; i++)
        {
            songs.Features[i * SongData.FeatureCount + tempo] = median[tempo];
            songs.Features[i * SongData.FeatureCount + key] = median[key];
        }
        var a = Explain.IntegratedGradients(fixture.Device, Quantile.Value, songs, steps: 16);
        for (int i = 0; i < songs.Count; i++)
        {
            Assert.Equal(0f, a.Of(i)[tempo]);
            Assert.Equal(0f, a.Of(i)[key]);
            Assert.Contains(a.Of(i).ToArray(), c => c != 0f);
        }
    }

    [Fact]
    public void Permutation_importance_of_a_feature_the_model_ignores_is_zero()
    {
        var model = Trainer.Train(fixture.Device, Songs.Value, TrainingOptions.Study with { Epochs = 3 }).Model;
        int tempo = Array.IndexOf(SongData.FeatureNames, "tempo");
        var weights = (float[])model.Networks[0].Clone();
        for (int o = 0; o < model.Layout.Outputs(0); o++)
            weights[model.Layout.WeightOffset(0) + o * model.Layout.Inputs(0) + tempo] = 0f; // the first layer ignores tempo
        var blind = model with { Networks = [weights] };
        var importance = Explain.PermutationImportance(fixture.Device, blind, Songs.Value);
        Assert.Equal(0.0, importance[tempo]);
        Assert.Equal(importance.Max(), importance.Where((_, c) => c != tempo).Max());
        Assert.True(importance.Max() > 0.01, $"no feature matters: {string.Join(", ", importance)}");
        Assert.Equal(importance, Explain.PermutationImportance(fixture.Device, blind, Songs.Value)); // seeded
    }

    [Fact]
    public void Explain_writes_contributions_per_song_and_the_global_importances_with_their_chart()
    {
        string model = Path.Combine(folder, "m.hitgpu"), data = Path.Combine(folder, "songs.csv"), plots = Path.Combine(folder, "plots");
        ModelFile.Save(Quantile.Value, model);
        SongData.WriteCsv(Songs.Value.Subset(Enumerable.Range(0, 25).ToArray()), data);
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(0, HitGpuCli.Run(["explain", "--accelerator", "cpu", "--model", model, "--data", data, "--steps", "8"], output, error));
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["track", "artist", "probability", "baseline_probability", .. SongData.FeatureNames], CsvText.Split(lines[0]));
        Assert.Equal(26, lines.Length);

        output = new StringWriter();
        Assert.Equal(0, HitGpuCli.Run(["explain", "--accelerator", "cpu", "--model", model, "--data", data, "--global", "--plot", plots], output, error));
        var rows = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("feature,accuracy_lost", rows[0]);
        Assert.Equal(SongData.FeatureNames.Order(), rows.Skip(1).Take(15).Select(r => r.Split(',')[0]).Order());
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(Path.Combine(plots, "importance.png"))[..4]);
        Assert.Equal(HitGpuCli.BadInput, HitGpuCli.Run(["explain", "--model", model, "--data", data, "--plot", plots], output, error));
    }
}
