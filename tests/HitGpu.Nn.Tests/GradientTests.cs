// An independent proof of the gradients: the whole network's loss differentiated by central finite
// differences in double, against the analytic reference; then the device network against that reference.
using HitGpu.Nn;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class GradientTests(AcceleratorFixture fixture)
{
    private static readonly ParameterLayout Layout = ParameterLayout.ForClassifier(SongData.FeatureCount, [64, 32]);
    private const int Rows = 16;

    private static (double[] parameters, double[] x, double[] y) Problem(int seed)
    {
        var rng = new Random(seed);
        var parameters = Layout.Initialize(seed).Select(p => (double)p).ToArray();
        // Non-zero biases, so the bias gradients are not checked at one special point only.
        for (int l = 0; l < Layout.Layers; l++)
            for (int o = 0; o < Layout.Outputs(l); o++)
                parameters[Layout.BiasOffset(l) + o] = rng.NextDouble() * 0.2 - 0.1;
        var x = Enumerable.Range(0, Rows * SongData.FeatureCount).Select(_ => rng.NextDouble() * 4 - 2).ToArray();
        var y = Enumerable.Range(0, Rows).Select(i => (double)(i % 2)).ToArray();
        return (parameters, x, y);
    }

    [Fact]
    public void Reference_gradient_matches_finite_differences_for_every_parameter()
    {
        var (parameters, x, y) = Problem(seed: 3);
        var analytic = new double[Layout.Count];
        Network.LossAndGradientReference<double>(Layout, parameters, x, y, Rows, analytic);
        Assert.Contains(analytic, g => Math.Abs(g) > 1e-3); // a gradient of zeros would pass trivially
        const double h = 1e-6;
        var shifted = (double[])parameters.Clone();
        for (int i = 0; i < Layout.Count; i++)
        {
            shifted[i] = parameters[i] + h;
            double up = Network.LossAndGradientReference<double>(Layout, shifted, x, y, Rows, []);
            shifted[i] = parameters[i] - h;
            double down = Network.LossAndGradientReference<double>(Layout, shifted, x, y, Rows, []);
            shifted[i] = parameters[i];
            // Central differences in double: truncation O(h^2) ~ 1e-12 and rounding ~ 1e-16 / h ~ 1e-10.
            Tolerance.Close(analytic[i], (up - down) / (2 * h), $"d loss / d parameter {i}", abs: 1e-8, rel: 1e-6);
        }
    }

    [Fact]
    public void Device_network_gradient_matches_the_reference()
    {
        var (parameters, x, y) = Problem(seed: 5);
        var expected = new double[Layout.Count];
        double expectedLoss = Network.LossAndGradientReference<double>(Layout, parameters, x, y, Rows, expected);

        var device = fixture.Device;
        using var network = new Network(device, Layout, Rows, parameters.Select(p => (float)p).ToArray());
        using var features = device.Upload<float>(x.Select(v => (float)v).ToArray(), Rows, SongData.FeatureCount);
        using var labels = device.Upload<float>(y.Select(v => (float)v).ToArray(), Rows);
        using var loss = device.Allocate<float>(Rows);
        using var correct = device.Allocate<float>(Rows);
        var input = network.Input(features, 0);
        network.Forward(input, Rows);
        device.BinaryCrossEntropy(new LossArgs
        {
            Logits = network.Logits.View, Labels = RowSource.InPlace(labels.View, 1, features.View.Cast<int>()),
            LogitGradient = network.LogitGradient.View, SampleLoss = loss.View, SampleCorrect = correct.View,
            Rows = Rows, GradientScale = 1f / Rows,
        });
        network.Backward(input, Rows);

        Tolerance.Close(expectedLoss, loss.ToArray().Average(), "mean loss", 1e-6, 1e-5);
        var actual = network.Gradients.ToArray();
        // float32 sums of up to 64 products of values around 1: a few ulps of the largest term.
        for (int i = 0; i < Layout.Count; i++)
            Tolerance.Close(expected[i], actual[i], $"gradient {i}", abs: 2e-6, rel: 1e-4);
    }

    [Fact]
    public void Features_of_another_width_are_refused_before_any_launch()
    {
        var device = fixture.Device;
        using var network = new Network(device, Layout, 8, Layout.Initialize(0));
        using var narrow = device.Allocate<float>(8, 14);
        using var labels = device.Allocate<float>(8);
        using var loss = device.Allocate<float>(8);
        using var correct = device.Allocate<float>(8);
        Assert.Contains("reads 15 inputs per row, the features have 14", Assert.Throws<ArgumentException>(() => network.Input(narrow, 0)).Message);
        Assert.Throws<ArgumentException>(() => network.Score(narrow, labels, loss, correct));
    }
}
