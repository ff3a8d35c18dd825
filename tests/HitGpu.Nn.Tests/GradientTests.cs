// An independent proof of the gradients: the reference step (NetworkReference.Step) differentiated by
// central finite differences in double, with and without dropout, for a plain network and for each ensemble
// kind (every W, b, r and s); then the device network (the layered kernels) against it.

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class GradientTests(AcceleratorFixture fixture)
{
    private static readonly ParameterLayout Layout = ParameterLayout.ForClassifier(SongData.FeatureCount, [64, 32]);
    private const int Rows = 16;

    /// <summary>The default network, or a smaller one with k members of a kind (small: finite differences visit every parameter).</summary>
    /// <summary>
    /// The default network, or a smaller one with k members of a kind (small: finite differences visit every
    /// parameter), or one behind an embedding: piecewise (15 features of 1 + 3 inputs to 2 each) or periodic
    /// (3 frequencies to 2 per feature).
    /// </summary>
    private static ParameterLayout LayoutOf(EnsembleKind kind, int members, NumericEmbedding embedding) => embedding switch
    {
        NumericEmbedding.Piecewise => ParameterLayout.WithEmbedding(SongData.FeatureCount, 4, 2, [6], kind, members),
        NumericEmbedding.Periodic => ParameterLayout.WithPeriodicEmbedding(SongData.FeatureCount, 3, 2, [6], kind, members),
        _ => members == 1 ? Layout : ParameterLayout.ForClassifier(SongData.FeatureCount, [12, 7], kind, members),
    };

    private static int InputsOf(ParameterLayout layout) => layout.Inputs(0);

    private static (double[] parameters, double[] x, double[] y) Problem(ParameterLayout layout, int seed)
    {
        var rng = new Random(seed);
        var parameters = layout.Initialize(seed).Select(p => (double)p).ToArray();
        // Non-zero biases and scales away from 1, so their gradients are not checked at one special point only.
        for (int l = 0; l < layout.Layers; l++)
            foreach (var t in layout.Tensors(l))
                if (t.Name != "weight")
                    for (int e = 0; e < t.Length; e++)
                        parameters[t.Offset + e] = t.Name == "bias" ? rng.NextDouble() * 0.2 - 0.1 : parameters[t.Offset + e] * (0.7 + 0.6 * rng.NextDouble());
        var x = Enumerable.Range(0, Rows * InputsOf(layout)).Select(_ => rng.NextDouble() * 4 - 2).ToArray();
        // Non-zero piecewise weights of an embedding too (they start at zero).
        for (int l = 0; l < layout.Layers; l++)
            if (layout[l].Groups > 1 && layout[l].Activation != (int)Activation.Cos)
                for (int e = 0; e < layout.Tensors(l).First().Length; e++)
                    parameters[layout.WeightOffset(l) + e] += rng.NextDouble() * 0.4 - 0.2;
        var y = Enumerable.Range(0, Rows).Select(i => (double)(i % 2)).ToArray();
        return (parameters, x, y);
    }

    public static TheoryData<float, EnsembleKind, int, NumericEmbedding> Cases()
    {
        var data = new TheoryData<float, EnsembleKind, int, NumericEmbedding>();
        foreach (float dropout in new[] { 0f, 0.3f })
        {
            data.Add(dropout, EnsembleKind.Independent, 1, NumericEmbedding.None);
            foreach (var kind in Enum.GetValues<EnsembleKind>())
                data.Add(dropout, kind, 3, NumericEmbedding.None);
            foreach (var embedding in new[] { NumericEmbedding.Piecewise, NumericEmbedding.Periodic })
            {
                data.Add(dropout, EnsembleKind.Independent, 1, embedding); // an embedding before one network
                data.Add(dropout, EnsembleKind.Mini, 2, embedding);        // and before a batched ensemble
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Reference_gradient_matches_finite_differences_for_every_parameter(float dropout, EnsembleKind kind, int members, NumericEmbedding embedding)
    {
        // The mask is a fixed function of (seed, step, row, layer, unit): the loss stays differentiable in the parameters.
        // Label smoothing rides along with dropout.
        var settings = StepSettings.Default with { DropoutRate = dropout, DropoutSeed = 11, LabelSmoothing = dropout > 0 ? 0.1f : 0f };
        var layout = LayoutOf(kind, members, embedding);
        var (parameters, x, y) = Problem(layout, seed: 3);
        var analytic = new double[layout.Count];
        NetworkReference.Step<double>(layout, parameters, x, y, Rows, analytic, settings, step: 4);
        Assert.Contains(analytic, g => Math.Abs(g) > 1e-3); // a gradient of zeros would pass trivially
        const double h = 1e-6;
        var shifted = (double[])parameters.Clone();
        for (int i = 0; i < layout.Count; i++)
        {
            shifted[i] = parameters[i] + h;
            double up = NetworkReference.Step<double>(layout, shifted, x, y, Rows, [], settings, step: 4);
            shifted[i] = parameters[i] - h;
            double down = NetworkReference.Step<double>(layout, shifted, x, y, Rows, [], settings, step: 4);
            shifted[i] = parameters[i];
            // Central differences in double: truncation O(h^2) ~ 1e-12 and rounding ~ 1e-16 / h ~ 1e-10.
            Tolerance.Close(analytic[i], (up - down) / (2 * h), $"d loss / d parameter {i}", abs: 1e-8, rel: 1e-6);
        }
        if (dropout > 0)
        {
            var withoutDropout = new double[layout.Count];
            NetworkReference.Step<double>(layout, parameters, x, y, Rows, withoutDropout, StepSettings.Default, step: 4);
            Assert.NotEqual(withoutDropout, analytic); // the mask was applied
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Device_network_gradient_matches_the_reference(float dropout, EnsembleKind kind, int members, NumericEmbedding embedding)
    {
        var settings = StepSettings.Default with { DropoutRate = dropout, DropoutSeed = 11, LabelSmoothing = dropout > 0 ? 0.1f : 0f };
        var layout = LayoutOf(kind, members, embedding);
        var (parameters, x, y) = Problem(layout, seed: 5);
        var expected = new double[layout.Count];
        double expectedLoss = NetworkReference.Step<double>(layout, parameters, x, y, Rows, expected, settings, step: 4);

        var device = fixture.Device;
        using var network = new Network(device, layout, Rows);
        network.Reset(parameters.Select(p => (float)p).ToArray());
        using var data = new DeviceDataset(device, x.Select(v => (float)v).ToArray(), InputsOf(layout), y.Select(v => (float)v).ToArray());
        network.ComputeGradient(data, 0, Rows, order: null, settings, step: 4);

        Tolerance.Close(expectedLoss, data.ReadMetrics().Loss, "mean loss", 1e-6, 1e-5);
        var actual = network.Gradients.ToArray();
        // float32 sums of up to 64 products of values around 1: a few ulps of the largest term.
        for (int i = 0; i < layout.Count; i++)
            Tolerance.Close(expected[i], actual[i], $"gradient {i}", abs: 2e-6, rel: 1e-4);
    }

    [Fact]
    public void Features_of_another_width_are_refused_before_any_launch()
    {
        var device = fixture.Device;
        using var network = new Network(device, Layout, 8);
        using var narrow = new DeviceDataset(device, new float[8 * 14], 14, new float[8]);
        Assert.Contains("reads 15 inputs per row, the features have 14",
            Assert.Throws<ArgumentException>(() => network.ComputeGradient(narrow, 0, 8, null, StepSettings.Default, 0)).Message);
        Assert.Throws<ArgumentException>(() => network.Score(narrow));
    }
}
